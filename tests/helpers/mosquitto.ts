import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { registerCleanup } from './cleanup.js';
import { freePort } from './ports.js';
import { runCommand, spawnProcess, type SpawnedProcess } from './process.js';
import { makeTempDir } from './tmp.js';

export interface MosquittoOptions {
  /** Fixed port (e.g. to come back on the port of a previous instance); default: a free one. */
  port?: number;
  /** Default true. */
  allowAnonymous?: boolean;
  /** Users written to a password file with `mosquitto_passwd -b`: `{ username: password }`. */
  users?: Readonly<Record<string, string>>;
  /** Extra lines appended to mosquitto.conf (after the listener, so they apply to it). */
  config?: string;
}

export interface Mosquitto {
  readonly host: '127.0.0.1';
  readonly port: number;
  /** `mqtt://127.0.0.1:<port>` */
  readonly url: string;
  /** The instance's directory: mosquitto.conf, passwd, persistence. */
  readonly dir: string;
  readonly configPath: string;
  /** The running broker's PID (changes on restart). */
  pid(): number;
  /** Captured log of the current (or last stopped) broker process. */
  output(): string;
  /** Stops the broker (SIGTERM; SIGKILL after a grace period). Persistence and port are kept. */
  stop(): Promise<void>;
  /** Starts the broker again on the same port with the same data; stops it first if running. */
  restart(): Promise<void>;
  /** Stops the broker and removes its directory. */
  dispose(): Promise<void>;
}

const READY = /mosquitto version \S+ running/;
const PORT_TAKEN = /Address already in use/i;

/**
 * A real Mosquitto broker on 127.0.0.1, for tests that need an upstream broker (SPEC §7 uplink).
 * Listens on a free port unless one is given; all its files live in a temp dir.
 */
export async function startMosquitto(options: MosquittoOptions = {}): Promise<Mosquitto> {
  const tmp = await makeTempDir('gridedge-mosquitto-');
  const dir = tmp.path;
  const configPath = join(dir, 'mosquitto.conf');
  const passwordFile = join(dir, 'passwd');

  const users = Object.entries(options.users ?? {});
  for (const [i, [user, password]] of users.entries()) {
    await runCommand('mosquitto_passwd', [...(i === 0 ? ['-c'] : []), '-b', passwordFile, user, password]);
  }

  const writeConfig = (port: number): Promise<void> => {
    const lines = [
      '# written by tests/helpers/mosquitto.ts',
      'per_listener_settings false',
      `listener ${port} 127.0.0.1`,
      `allow_anonymous ${options.allowAnonymous ?? true}`,
      ...(users.length > 0 ? [`password_file ${passwordFile}`] : []),
      'persistence true',
      `persistence_location ${dir}/`,
      'log_dest stderr',
      'log_type error',
      'log_type warning',
      'log_type notice',
      'log_type information',
      // As root, mosquitto would switch to the `mosquitto` user and then fail to write into our
      // root-owned temp dir; `root` here means "stay who you are" (ignored when not root).
      ...(process.getuid?.() === 0 ? ['user root'] : []),
      ...(options.config ? [options.config] : []),
      '',
    ];
    return writeFile(configPath, lines.join('\n'));
  };

  let port = options.port ?? (await freePort());
  let proc: SpawnedProcess | undefined;
  let last: SpawnedProcess | undefined;

  const launch = async (): Promise<void> => {
    const p = await spawnProcess('mosquitto', ['-c', configPath], { name: `mosquitto:${port}`, cwd: dir });
    try {
      await p.waitForLine(READY, 10_000);
    } catch (err) {
      await p.stop(1_000);
      throw Object.assign(err as Error, { portTaken: PORT_TAKEN.test(p.output()) });
    }
    proc = p;
    last = p;
  };

  // The free port may be taken between freePort() and the bind: try another unless it was pinned.
  for (let attempt = 1; ; attempt++) {
    await writeConfig(port);
    try {
      await launch();
      break;
    } catch (err) {
      const taken = (err as { portTaken?: boolean }).portTaken === true;
      if (!taken || options.port !== undefined || attempt >= 3) {
        await tmp.cleanup();
        throw err;
      }
      port = await freePort();
    }
  }

  const stop = async (): Promise<void> => {
    const p = proc;
    proc = undefined;
    await p?.stop();
  };
  const dispose = async (): Promise<void> => {
    handle.unregister();
    await stop();
    await tmp.cleanup();
  };
  const handle = registerCleanup(`mosquitto on port ${port}`, dispose);

  return {
    host: '127.0.0.1',
    port,
    url: `mqtt://127.0.0.1:${port}`,
    dir,
    configPath,
    pid: () => {
      if (!proc) throw new Error(`mosquitto on port ${port} is not running`);
      return proc.pid;
    },
    output: () => (proc ?? last)?.output() ?? '',
    stop,
    async restart() {
      await stop();
      await launch();
    },
    dispose,
  };
}
