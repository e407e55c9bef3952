import { test } from "node:test";
import assert from "node:assert/strict";
import { TabWriter } from "./tabwriter.js";

function render(text: string): string {
  let out = "";
  const tw = new TabWriter({ write: (s: string) => (out += s) });
  tw.write(text);
  tw.flush();
  return out;
}

test("cells pad with tabs to multiples of 8, as Go's tabwriter with padchar '\\t'", () => {
  assert.equal(render("Reclaimable:\t1.00kB\nTotal:\t2.00kB\n"), "Reclaimable:\t1.00kB\nTotal:\t\t2.00kB\n");
  assert.equal(render("ID\tRECLAIMABLE\tSIZE\tLAST ACCESSED\n"), "ID\tRECLAIMABLE\tSIZE\tLAST ACCESSED\n");
  const header = "ID\tRECLAIMABLE\tSIZE\tLAST ACCESSED\n";
  const row = `${"a".repeat(71)}\t${"true".padEnd(11)}\t4.10kB\t\n`;
  assert.equal(render(header + row), `ID${"\t".repeat(9)}RECLAIMABLE\tSIZE\tLAST ACCESSED\n${"a".repeat(71)}\t${"true".padEnd(11)}\t4.10kB\t\n`);
  // A wider cell in the column widens it for every line of the block.
  assert.equal(render("SIZE\tX\n247.96kB\tY\n"), "SIZE\t\tX\n247.96kB\tY\n");
});
