// What Info and ListWorkers report as BuildkitVersion. The bundle (scripts/build.mjs) defines
// the globals from package.json and git; from sources they fall back to a development version.
import type { BuildkitVersionInfo } from "./convert.js";

declare const __KILN_VERSION__: string | undefined;
declare const __KILN_REVISION__: string | undefined;

export const kilnVersion: BuildkitVersionInfo = {
  package: "github.com/kiln-build/kiln",
  version: typeof __KILN_VERSION__ === "string" ? __KILN_VERSION__ : "v0.1.0-dev",
  revision: typeof __KILN_REVISION__ === "string" ? __KILN_REVISION__ : "",
};
