// Go's text/tabwriter as buildctl configures it (minwidth 1, tabwidth 8, padding 1, padchar '\t'):
// tab-terminated cells are aligned into columns padded with tabs, so kiln's tables are the same
// bytes as buildctl's. Lines are buffered until flush().

export class TabWriter {
  private lines: string[][] = [];
  private partial = "";

  constructor(
    private readonly out: { write(s: string): unknown },
    private readonly tabwidth = 8,
    private readonly padding = 1,
    private readonly minwidth = 1,
  ) {}

  write(text: string): void {
    const all = this.partial + text;
    const rows = all.split("\n");
    this.partial = rows.pop()!;
    for (const r of rows) this.lines.push(r.split("\t"));
  }

  flush(): void {
    if (this.partial !== "") {
      this.lines.push(this.partial.split("\t"));
      this.partial = "";
    }
    // Column j's width is set by the consecutive lines that have a j-th terminated cell (a block).
    const out: string[] = [];
    const widths: number[][] = this.lines.map(() => []);
    const maxCols = Math.max(0, ...this.lines.map((l) => l.length - 1));
    for (let col = 0; col < maxCols; col++) {
      let i = 0;
      while (i < this.lines.length) {
        if (this.lines[i]!.length - 1 <= col) {
          i++;
          continue;
        }
        let j = i;
        let w = this.minwidth;
        while (j < this.lines.length && this.lines[j]!.length - 1 > col) {
          w = Math.max(w, this.lines[j]![col]!.length + this.padding);
          j++;
        }
        // With tab padding the column width is rounded up to whole tabs.
        w = Math.ceil(w / this.tabwidth) * this.tabwidth;
        for (let k = i; k < j; k++) widths[k]![col] = w;
        i = j;
      }
    }
    this.lines.forEach((cells, li) => {
      let s = "";
      for (let c = 0; c < cells.length; c++) {
        const text = cells[c]!;
        s += text;
        if (c < cells.length - 1) {
          const w = widths[li]![c]!;
          s += "\t".repeat(Math.ceil((w - text.length) / this.tabwidth));
        }
      }
      out.push(s + "\n");
    });
    this.out.write(out.join(""));
    this.lines = [];
  }
}
