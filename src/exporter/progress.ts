// Export progress as BuildKit shows it: one vertex per exporter ("exporting to image") with a
// status line per step ("exporting layers", "exporting manifest sha256:…", "pushing layers").
import { randomBytes } from "node:crypto";
import type { ProgressWriter } from "../solver/types.js";
import { digestOf, errorMessage, type Digest } from "../util/index.js";

export class ExportVertex {
  readonly digest: Digest;
  private readonly started = new Date();

  constructor(
    private readonly progress: ProgressWriter,
    readonly name: string,
  ) {
    this.digest = digestOf(`${name}:${randomBytes(8).toString("hex")}`);
    progress.write({ vertexes: [{ digest: this.digest, name, inputs: [], started: this.started }] });
  }

  /** Runs one step, shown as a status line that completes with it. */
  async step<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const started = new Date();
    this.progress.write({ statuses: [{ id, vertex: this.digest, current: 0, started }] });
    try {
      return await fn();
    } finally {
      this.progress.write({ statuses: [{ id, vertex: this.digest, current: 0, started, completed: new Date() }] });
    }
  }

  /** A status line that is already done (a fact worth showing: "pushed NAME"). */
  note(id: string): void {
    const now = new Date();
    this.progress.write({ statuses: [{ id, vertex: this.digest, current: 0, started: now, completed: now }] });
  }

  done(err?: unknown): void {
    const v = { digest: this.digest, name: this.name, inputs: [], started: this.started, completed: new Date() };
    this.progress.write({ vertexes: [err === undefined ? v : { ...v, error: errorMessage(err) }] });
  }

  /** Runs the whole export inside the vertex, marking it done or failed. */
  async run<T>(fn: (v: ExportVertex) => Promise<T>): Promise<T> {
    try {
      const r = await fn(this);
      this.done();
      return r;
    } catch (err) {
      this.done(err);
      throw err;
    }
  }
}
