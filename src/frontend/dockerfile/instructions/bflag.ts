// Instruction flags (`--name=value`): declared per instruction, then checked against what the
// Dockerfile wrote, with BuildKit's error messages.
import { ParseFailure } from "../parser/index.js";
import { withSuggestion } from "./suggest.js";

type FlagType = "bool" | "string" | "strings";

export interface Flag {
  readonly name: string;
  readonly type: FlagType;
  value: string;
  values: string[];
}

export class BFlags {
  private readonly flags = new Map<string, Flag>();
  readonly used = new Map<string, Flag>();
  private setupError: string | undefined;

  constructor(readonly args: readonly string[]) {}

  private add(name: string, type: FlagType, value: string): Flag {
    if (this.flags.has(name)) this.setupError = `Duplicate flag defined: ${name}`;
    const flag: Flag = { name, type, value, values: [] };
    this.flags.set(name, flag);
    return flag;
  }

  addBool(name: string, def: boolean): Flag {
    return this.add(name, "bool", def ? "true" : "false");
  }

  addString(name: string, def: string): Flag {
    return this.add(name, "string", def);
  }

  addStrings(name: string): Flag {
    return this.add(name, "strings", "");
  }

  isUsed(name: string): boolean {
    return this.used.has(name);
  }

  usedNames(): string[] {
    return [...this.used.keys()];
  }

  /** Checks the written flags against the declared ones; throws ParseFailure. */
  parse(): void {
    if (this.setupError !== undefined) throw new ParseFailure(`error setting up flags: ${this.setupError}`);
    for (const a of this.args) {
      // POSIX: `--` ends the options.
      if (a === "--") return;
      if (!a.startsWith("--")) throw new ParseFailure(`arg should start with -- : ${a}`);
      const eq = a.indexOf("=");
      const flagName = eq < 0 ? a : a.slice(0, eq);
      const hasValue = eq >= 0;
      const value = hasValue ? a.slice(eq + 1) : "";
      const name = flagName.slice(2);
      const flag = this.flags.get(name);
      // v0.11.6 names the flag without its dashes (newer BuildKit keeps them); kilnd must read as the
      // BuildKit its clients test against.
      if (!flag) throw new ParseFailure(withSuggestion(`unknown flag: ${name}`, name, [...this.flags.keys()], true));
      if (this.used.has(name) && flag.type !== "strings") throw new ParseFailure(`duplicate flag specified: ${flagName}`);
      this.used.set(name, flag);
      switch (flag.type) {
        case "bool": {
          if (hasValue && value === "") throw new ParseFailure(`missing a value on flag: ${flagName}`);
          const v = value.toLowerCase();
          if (v === "true" || v === "") flag.value = "true";
          else if (v === "false") flag.value = "false";
          else throw new ParseFailure(`expecting boolean value for flag ${flagName}, not: ${value}`);
          break;
        }
        case "string":
          if (!hasValue) throw new ParseFailure(`missing a value on flag: ${flagName}`);
          flag.value = value;
          break;
        case "strings":
          if (!hasValue) throw new ParseFailure(`missing a value on flag: ${flagName}`);
          flag.values.push(value);
          break;
      }
    }
  }
}
