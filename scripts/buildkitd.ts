// The real buildkitd the golden recorders build with: started on a root and socket of their own,
// ready once buildctl answers, stopped by the PID it was started with.
import { buildkitDaemon, type Daemon } from "../bench/daemons.js";

export function recordingDaemon(buildkitd: string, buildctl: string): { start(root: string, sock: string, config: string): Promise<void>; stop(): Promise<void> } {
  let running: Daemon | undefined;
  return {
    async start(root, sock, config) {
      running = buildkitDaemon({ buildkitd, buildctl }, root, sock, config);
      await running.start();
    },
    async stop() {
      await running?.stop();
      running = undefined;
    },
  };
}
