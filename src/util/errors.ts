// Typed, user-facing errors. Libraries throw; only cmd/ prints.

export interface SourceLocation {
  file: string;
  /** 1-based line numbers, inclusive. */
  startLine: number;
  endLine: number;
  /** The source lines themselves, for display. */
  lines: string[];
  /** The whole file, when known: clients show the lines around the error from it (BuildKit's errdefs.Source). */
  allLines?: readonly string[];
  /** The LLB the file was read with (a marshalled pb.Definition), BuildKit's SourceInfo.definition. */
  definition?: Uint8Array;
}

export class KilnError extends Error {
  readonly code: string;
  readonly hint: string | undefined;
  readonly location: SourceLocation | undefined;

  constructor(code: string, message: string, opts: { cause?: unknown; hint?: string; location?: SourceLocation } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = "KilnError";
    this.code = code;
    this.hint = opts.hint;
    this.location = opts.location;
  }
}

/** Thrown when work stops because its AbortSignal fired; not a failure of the work itself. */
export class CanceledError extends KilnError {
  constructor(cause?: unknown) {
    super("KILN_CANCELED", "canceled", { cause });
    this.name = "CanceledError";
  }
}

export function isAbortError(err: unknown): boolean {
  if (err instanceof CanceledError) return true;
  return err instanceof Error && (err.name === "AbortError" || (err as { code?: string }).code === "ABORT_ERR");
}

export function throwIfAborted(signal: AbortSignal): void {
  if (signal.aborted) throw new CanceledError(signal.reason);
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
