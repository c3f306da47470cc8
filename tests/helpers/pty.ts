import { lstat, readlink, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { registerCleanup } from './cleanup.js';
import { spawnProcess, type SpawnedProcess } from './process.js';
import { makeTempDir } from './tmp.js';

export interface PtyPair {
  /** Link to one end: open it with serialport like `/dev/ttyUSB0` (e.g. the gateway's side). */
  readonly a: string;
  /** Link to the other end (e.g. the simulated meter or RF bridge). */
  readonly b: string;
  /** The socat process's PID (changes on restart). */
  pid(): number;
  output(): string;
  /** Ends socat gracefully (SIGTERM): both ends hang up and socat removes the links. */
  stop(): Promise<void>;
  /**
   * Simulates the USB adapter vanishing: SIGKILL, so the ptys hang up at once and the links are
   * left dangling, as a `/dev/serial/by-id/…` path would be until udev notices.
   *
   * What serialport 13 does then depends on timing: with its read parked in poll() it closes the
   * port (`close` event); with a read in flight, the read returns 0 and @serialport/bindings-cpp
   * retries it forever with no event (serialport/bindings-cpp#162) until the next write fails
   * with EIO. A test of a read-only bus must expect the second case too.
   */
  kill(): Promise<void>;
  /** Brings the pair back under the same link paths (fresh ptys, as a re-plugged adapter). */
  restart(): Promise<void>;
  /** Stops socat and removes the temp dir. */
  dispose(): Promise<void>;
}

/**
 * A connected pair of pseudo-terminals from socat, standing in for a USB serial adapter and the
 * device behind it (SPEC §4). Resolves when both links exist.
 */
export async function createPtyPair(options: { startTimeoutMs?: number } = {}): Promise<PtyPair> {
  const tmp = await makeTempDir('gridedge-pty-');
  const a = join(tmp.path, 'a');
  const b = join(tmp.path, 'b');
  let proc: SpawnedProcess | undefined;
  let last: SpawnedProcess | undefined;

  const launch = async (): Promise<void> => {
    // A link left by a killed socat would make the new one fail.
    await rm(a, { force: true });
    await rm(b, { force: true });
    const p = await spawnProcess('socat', ['-d', '-d', `pty,raw,echo=0,link=${a}`, `pty,raw,echo=0,link=${b}`], {
      name: 'socat-pty',
    });
    try {
      // socat prints this after both ptys and links exist; checking the links too costs nothing.
      await p.waitForLine('starting data transfer loop', options.startTimeoutMs ?? 5_000);
      await waitForLinks([a, b], p, 2_000);
    } catch (err) {
      await p.stop(1_000);
      throw err;
    }
    proc = p;
    last = p;
  };
  try {
    await launch();
  } catch (err) {
    await tmp.cleanup();
    throw err;
  }

  const stop = async (): Promise<void> => {
    const p = proc;
    proc = undefined;
    await p?.stop(2_000);
  };
  const kill = async (): Promise<void> => {
    const p = proc;
    proc = undefined;
    if (!p) return;
    p.signal('SIGKILL');
    await p.waitForExit(5_000);
  };
  const dispose = async (): Promise<void> => {
    handle.unregister();
    await stop();
    await tmp.cleanup();
  };
  const handle = registerCleanup(`pty pair ${tmp.path}`, dispose);

  return {
    a,
    b,
    pid: () => {
      if (!proc) throw new Error('the pty pair is not running');
      return proc.pid;
    },
    output: () => (proc ?? last)?.output() ?? '',
    stop,
    kill,
    async restart() {
      await stop();
      await launch();
    },
    dispose,
  };
}

async function waitForLinks(links: readonly string[], proc: SpawnedProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const present = await Promise.all(
      links.map(async (link) => {
        try {
          if (!(await lstat(link)).isSymbolicLink()) return false;
          await readlink(link);
          return true;
        } catch {
          return false;
        }
      }),
    );
    if (present.every(Boolean)) return;
    if (proc.exited() || Date.now() > deadline) {
      throw new Error(`socat did not create ${links.join(' and ')}\n--- socat output ---\n${proc.output()}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}
