// The little terminal each running step's output is played into for the tty display, so `\r`
// progress bars and cursor moves show as a terminal would show them, and only the last rows
// remain. It follows tonistiigi/vt100 (what BuildKit uses): a grid of cells, a cursor, line feeds
// that scroll only when the next character is put, and a handful of escape sequences (cursor
// moves, erase, save/restore); colours and other attributes are parsed and dropped.

const ESC = 0x1b;
const CSI = 0x9b;

export class VT100 {
  height: number;
  width: number;
  /** One code point per cell. */
  content: string[][];
  private y = 0;
  private x = 0;
  private savedY = 0;
  private savedX = 0;
  private readonly decoder = new TextDecoder("utf-8");
  /** An escape sequence cut off at the end of the last write. */
  private pending = "";

  constructor(height: number, width: number) {
    this.height = Math.max(1, height);
    this.width = Math.max(1, width);
    this.content = Array.from({ length: this.height }, () => new Array<string>(this.width).fill(" "));
  }

  /** Rows holding anything but spaces. */
  usedHeight(): number {
    return this.content.filter((row) => row.some((c) => c !== " ")).length;
  }

  /** The rows as strings, full width. */
  rows(): string[] {
    return this.content.map((r) => r.join(""));
  }

  resize(height: number, width: number): void {
    height = Math.max(1, height);
    width = Math.max(1, width);
    if (height > this.height) {
      for (let i = this.height; i < height; i++) this.content.push(new Array<string>(this.width).fill(" "));
    } else if (height < this.height) {
      this.content.length = height;
    }
    this.height = height;
    if (width !== this.width) {
      this.content = this.content.map((row) => (width > this.width ? row.concat(new Array<string>(width - this.width).fill(" ")) : row.slice(0, width)));
      this.width = width;
    }
  }

  write(data: Uint8Array | string): void {
    const text = this.pending + (typeof data === "string" ? data : this.decoder.decode(data, { stream: true }));
    this.pending = "";
    const cps = Array.from(text);
    let i = 0;
    while (i < cps.length) {
      const ch = cps[i]!;
      const c = ch.codePointAt(0)!;
      if (c === ESC || c === CSI) {
        const end = this.escape(cps, i);
        if (end < 0) {
          // Incomplete: keep a short tail for the next write, drop a runaway one.
          const tail = cps.slice(i).join("");
          if (tail.length < 12) this.pending = tail;
          return;
        }
        i = end;
        continue;
      }
      if (c < 0x20 || (c >= 0x7f && c <= 0x9f)) this.control(c);
      else this.put(ch);
      i++;
    }
  }

  /** Runs the escape sequence starting at `i`; returns the index after it, or -1 if it is incomplete. */
  private escape(cps: string[], i: number): number {
    let csi = cps[i]!.codePointAt(0) === CSI;
    let args = "";
    let quote = false;
    for (let j = i + 1, n = 0; j < cps.length; j++, n++) {
      const r = cps[j]!;
      if (n === 0 && r === "[") {
        csi = true;
        continue;
      }
      const code = r.codePointAt(0)!;
      if (!csi) {
        this.command(r, "");
        return j + 1;
      }
      if (!quote && code >= 64 && code <= 126) {
        this.command(r, args);
        return j + 1;
      }
      if (r === '"') quote = !quote;
      args += r;
    }
    return -1;
  }

  private command(cmd: string, rawArgs: string): void {
    let args: number[] = [];
    if (rawArgs !== "") {
      const parts = rawArgs.split(";");
      if (!parts.every((p) => /^[+-]?\d+$/.test(p))) return;
      args = parts.map((p) => Number.parseInt(p, 10));
    }
    const move = (dy: number, dx: number) => {
      const c = args[0] ?? 1;
      this.home(this.y + dy * c, this.x + dx * c);
    };
    switch (cmd) {
      case "s":
      case "7":
        this.savedY = this.y;
        this.savedX = this.x;
        break;
      case "u":
      case "8":
        this.y = this.savedY;
        this.x = this.savedX;
        break;
      case "A":
        move(-1, 0);
        break;
      case "B":
        move(1, 0);
        break;
      case "C":
        move(0, 1);
        break;
      case "D":
        move(0, -1);
        break;
      case "K": {
        const d = args[0] ?? 0;
        if (d === 0) this.erase(this.y, this.x, this.y, this.width - 1);
        else if (d === 1) this.erase(this.y, 0, this.y, this.x);
        else if (d === 2) this.erase(this.y, 0, this.y, this.width - 1);
        break;
      }
      case "J": {
        const d = args[0] ?? 0;
        if (d === 0) this.erase(this.y, 0, this.height - 1, this.width - 1);
        else if (d === 1) this.erase(0, 0, this.y, this.width - 1);
        else if (d === 2) this.erase(0, 0, this.height - 1, this.width - 1);
        break;
      }
      case "H":
      case "f":
        if (args.length >= 2) this.home(args[0]! - 1, args[1]! - 1);
        else this.home(0, 0);
        break;
      default:
        // SGR ("m") and everything else: no visible effect on the text.
        break;
    }
  }

  /** Moves the cursor, clamped to the screen. */
  private home(y: number, x: number): void {
    this.y = Math.min(Math.max(y, 0), this.height - 1);
    this.x = Math.min(Math.max(x, 0), this.width - 1);
  }

  private erase(y1: number, x1: number, y2: number, x2: number): void {
    for (let y = Math.min(y1, y2); y <= Math.max(y1, y2); y++) {
      const row = this.content[y];
      if (!row) continue;
      for (let x = Math.min(x1, x2); x <= Math.max(x1, x2); x++) if (x < row.length) row[x] = " ";
    }
  }

  private control(c: number): void {
    if (c === 0x08) {
      this.x--;
      if (this.x < 0) {
        if (this.y === 0) this.x = 0;
        else {
          this.y--;
          this.x = this.width - 1;
        }
      }
    } else if (c === 0x0a) {
      this.y++;
      this.x = 0;
    } else if (c === 0x0d) {
      this.x = 0;
    }
    // Tabs, bells and the rest move nothing, as in the emulator BuildKit uses.
  }

  private put(ch: string): void {
    if (this.y >= this.height) {
      // Scroll one row: the top row goes, a blank one comes in at the bottom.
      const first = this.content.shift()!;
      first.fill(" ");
      this.content.push(first);
      this.y = this.height - 1;
    }
    const row = this.content[this.y]!;
    if (this.x >= row.length) this.x = row.length - 1;
    row[this.x] = ch;
    this.x++;
    if (this.x >= this.width) {
      this.x = 0;
      this.y++;
    }
  }
}
