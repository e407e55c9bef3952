import { test } from "node:test";
import assert from "node:assert/strict";
import { marshalPlatforms, parsePlatformsMetadata, platformsMetadataKey } from "./types.js";

test("refs.platforms is exptypes.Platforms as Go marshals it, and reads back", () => {
  const list = [
    { id: "linux/amd64", platform: { os: "linux", architecture: "amd64" } },
    { id: "linux/arm/v7", platform: { os: "linux", architecture: "arm", variant: "v7" } },
  ];
  const bytes = marshalPlatforms(list);
  assert.equal(
    Buffer.from(bytes).toString(),
    '{"Platforms":[{"ID":"linux/amd64","Platform":{"architecture":"amd64","os":"linux"}},{"ID":"linux/arm/v7","Platform":{"architecture":"arm","os":"linux","variant":"v7"}}]}',
  );
  assert.deepEqual(parsePlatformsMetadata({ [platformsMetadataKey]: bytes }), list);
  assert.equal(parsePlatformsMetadata({}), undefined);
  assert.deepEqual(parsePlatformsMetadata({ [platformsMetadataKey]: Buffer.from('{"Platforms":null}') }), []);
});
