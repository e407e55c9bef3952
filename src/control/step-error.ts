// A failed build step as users and BuildKit's clients each expect it: kiln's own CLI names the
// step in the message ("[2/2] RUN exit 3: process … did not complete successfully"), while
// BuildKit's wire message is the step's error alone, the step travelling as an errdefs.Vertex
// detail (its digest) that clients match against the progress they were shown.
import { KilnError, type SourceLocation } from "../util/index.js";

export class StepError extends KilnError {
  constructor(
    code: string,
    /** The progress name of the step ("[2/2] RUN exit 3"). */
    readonly step: string,
    /** The step's vertex digest, as progress reports it. */
    readonly vertex: string,
    /** The step's own error message, as BuildKit sends it. */
    readonly reason: string,
    opts: { cause?: unknown; hint?: string; location?: SourceLocation } = {},
  ) {
    super(code, `${step}: ${reason}`, opts);
    this.name = "StepError";
  }
}

/** The message BuildKit would send for `err`: a failed step's error without kiln's step name. */
export function wireMessage(err: unknown): string {
  return err instanceof StepError ? err.reason : err instanceof Error ? err.message : String(err);
}
