// Attestations beside exported files (the local and tar exporters), as BuildKit writes them: one
// indented in-toto statement per attestation, named `<attestation-prefix><file name>`, whose
// subjects are every regular file of the result with its sha256.
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { lstat, readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import { KilnError, throwIfAborted } from "../util/index.js";
import { statementBytes, type Attestation, type InTotoSubject } from "./attestation.js";
import { indentJSON } from "./image.js";

/** Every regular file under `root`, by path relative to it, in lexical walk order. */
async function fileSubjects(signal: AbortSignal, root: string | undefined): Promise<InTotoSubject[]> {
  const out: InTotoSubject[] = [];
  if (!root) return out;
  const walk = async (rel: string): Promise<void> => {
    const names = (await readdir(path.join(root, rel))).sort();
    for (const name of names) {
      throwIfAborted(signal);
      const r = rel ? `${rel}/${name}` : name;
      const st = await lstat(path.join(root, r));
      if (st.isDirectory()) await walk(r);
      else if (st.isFile()) {
        const h = createHash("sha256");
        await pipeline(createReadStream(path.join(root, r)), h, { signal });
        out.push({ name: r, digest: { sha256: h.digest("hex") } });
      }
    }
  };
  await walk("");
  return out;
}

/**
 * Writes the statements about the files under `root` into `dir` (mode 0600); attestations only
 * image outputs take (inline-only) are left out.
 */
export async function writeAttestationFiles(signal: AbortSignal, root: string | undefined, atts: Attestation[], dir: string, prefix: string): Promise<void> {
  const wanted = atts.filter((a) => !a.inlineOnly);
  if (wanted.length === 0) return;
  const subjects = await fileSubjects(signal, root);
  const names = new Set<string>();
  for (const att of wanted) {
    const name = prefix + path.posix.basename(att.path);
    if (names.has(name)) throw new KilnError("KILN_EXPORTER", `duplicate attestation path name ${name}`);
    names.add(name);
    const statement = JSON.parse(await statementBytes(att, subjects)) as unknown;
    await writeFile(path.join(dir, name), indentJSON(statement), { mode: 0o600 });
  }
}
