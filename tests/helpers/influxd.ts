import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { registerCleanup } from './cleanup.js';
import { freePort } from './ports.js';
import { spawnProcess, type SpawnedProcess } from './process.js';
import { makeTempDir } from './tmp.js';

export interface InfluxdOptions {
  /** Fixed HTTP port; default: a free one. */
  port?: number;
  /** Extra TOML appended to the config (e.g. `[http]\n  max-body-size = 1000`). */
  config?: string;
  /** How long to wait for `/ping` (default 30 s: a cold start on a busy machine is slow). */
  startTimeoutMs?: number;
}

/** One statement's result in InfluxDB 1.x's `/query` JSON. */
export interface InfluxQueryResult {
  statement_id: number;
  error?: string;
  series?: { name: string; tags?: Record<string, string>; columns: string[]; values: unknown[][] }[];
}

export interface Influxd {
  readonly host: '127.0.0.1';
  /** HTTP API port. */
  readonly port: number;
  /** The RPC (backup/restore) port, bound to 127.0.0.1 too so two instances never collide. */
  readonly rpcPort: number;
  /** `http://127.0.0.1:<port>` */
  readonly url: string;
  readonly dir: string;
  output(): string;
  pid(): number;
  /**
   * Runs InfluxQL through `POST /query` (POST so that CREATE/DROP work too) and returns the
   * results; a statement error is thrown.
   */
  query(q: string, db?: string): Promise<InfluxQueryResult[]>;
  /** Writes line protocol through `POST /write` (ms precision); throws on a non-204 answer. */
  write(db: string, lines: string, precision?: 'ns' | 'u' | 'ms' | 's'): Promise<void>;
  stop(): Promise<void>;
  /** Starts again on the same ports with the same data; stops first if running. */
  restart(): Promise<void>;
  /** Stops the server and removes its directory. */
  dispose(): Promise<void>;
}

const PORT_TAKEN = /address already in use/i;

/** A real InfluxDB 1.x (Debian's 1.6.7) on 127.0.0.1, every file in a temp dir. SPEC §5 influxdb1 sink. */
export async function startInfluxd(options: InfluxdOptions = {}): Promise<Influxd> {
  const tmp = await makeTempDir('gridedge-influxd-');
  const dir = tmp.path;
  const configPath = join(dir, 'influxdb.conf');
  for (const sub of ['meta', 'data', 'wal']) await mkdir(join(dir, sub));

  // Every listener is named: a default left in place would bind a fixed port (8088 RPC, 8086 HTTP)
  // and collide with another instance or a system service.
  const writeConfig = (httpPort: number, rpc: number): Promise<void> =>
    writeFile(
      configPath,
      [
        '# written by tests/helpers/influxd.ts',
        'reporting-disabled = true',
        `bind-address = "127.0.0.1:${rpc}"`,
        '[meta]',
        `  dir = "${join(dir, 'meta')}"`,
        '  logging-enabled = false',
        '[data]',
        `  dir = "${join(dir, 'data')}"`,
        `  wal-dir = "${join(dir, 'wal')}"`,
        '  query-log-enabled = false',
        '[monitor]',
        '  store-enabled = false',
        '[subscriber]',
        '  enabled = false',
        '[http]',
        '  enabled = true',
        `  bind-address = "127.0.0.1:${httpPort}"`,
        '  auth-enabled = false',
        '  log-enabled = false',
        '  pprof-enabled = false',
        '  unix-socket-enabled = false',
        '[ifql]',
        '  enabled = false',
        '[logging]',
        '  suppress-logo = true',
        '  level = "warn"',
        '[[graphite]]',
        '  enabled = false',
        '[[collectd]]',
        '  enabled = false',
        '[[opentsdb]]',
        '  enabled = false',
        '[[udp]]',
        '  enabled = false',
        '[continuous_queries]',
        '  enabled = false',
        ...(options.config ? [options.config] : []),
        '',
      ].join('\n'),
    );

  let port = options.port ?? (await freePort());
  let rpcPort = await freePort();
  while (rpcPort === port) rpcPort = await freePort();
  const url = (): string => `http://127.0.0.1:${port}`;
  let proc: SpawnedProcess | undefined;
  let last: SpawnedProcess | undefined;

  const launch = async (): Promise<void> => {
    const p = await spawnProcess('influxd', ['run', '-config', configPath], { name: `influxd:${port}`, cwd: dir });
    try {
      await waitForPing(url(), p, options.startTimeoutMs ?? 30_000);
    } catch (err) {
      await p.stop(2_000);
      throw Object.assign(err as Error, { portTaken: PORT_TAKEN.test(p.output()) });
    }
    proc = p;
    last = p;
  };

  for (let attempt = 1; ; attempt++) {
    await writeConfig(port, rpcPort);
    try {
      await launch();
      break;
    } catch (err) {
      const taken = (err as { portTaken?: boolean }).portTaken === true;
      if (!taken || attempt >= 3) {
        await tmp.cleanup();
        throw err;
      }
      // Either port may be the taken one; the HTTP port only moves when it was not pinned.
      if (options.port === undefined) port = await freePort();
      rpcPort = await freePort();
    }
  }

  const stop = async (): Promise<void> => {
    const p = proc;
    proc = undefined;
    await p?.stop(10_000);
  };
  const dispose = async (): Promise<void> => {
    handle.unregister();
    await stop();
    await tmp.cleanup();
  };
  const handle = registerCleanup(`influxd on port ${port}`, dispose);

  const query = async (q: string, db?: string): Promise<InfluxQueryResult[]> => {
    const body = new URLSearchParams({ q, ...(db ? { db } : {}) });
    const res = await fetch(`${url()}/query`, { method: 'POST', body });
    const text = await res.text();
    if (!res.ok) throw new Error(`influxd query ${JSON.stringify(q)} → HTTP ${res.status}: ${text}`);
    const json = JSON.parse(text) as { results?: InfluxQueryResult[]; error?: string };
    if (json.error) throw new Error(`influxd query ${JSON.stringify(q)}: ${json.error}`);
    const failed = json.results?.find((r) => r.error);
    if (failed) throw new Error(`influxd query ${JSON.stringify(q)}: ${failed.error}`);
    return json.results ?? [];
  };

  return {
    host: '127.0.0.1',
    port,
    rpcPort,
    url: url(),
    dir,
    output: () => (proc ?? last)?.output() ?? '',
    pid: () => {
      if (!proc) throw new Error(`influxd on port ${port} is not running`);
      return proc.pid;
    },
    query,
    async write(db, lines, precision = 'ms') {
      const res = await fetch(`${url()}/write?${new URLSearchParams({ db, precision }).toString()}`, { method: 'POST', body: lines });
      if (res.status !== 204) throw new Error(`influxd write → HTTP ${res.status}: ${await res.text()}`);
    },
    stop,
    async restart() {
      await stop();
      await launch();
    },
    dispose,
  };
}

async function waitForPing(base: string, proc: SpawnedProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer yet';
  while (Date.now() < deadline) {
    if (proc.exited()) throw new Error(`influxd exited during start-up (${last})\n--- influxd output ---\n${proc.output()}`);
    try {
      const res = await fetch(`${base}/ping`, { signal: AbortSignal.timeout(1_000) });
      await res.arrayBuffer();
      if (res.status === 204) return;
      last = `HTTP ${res.status}`;
    } catch (err) {
      last = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`influxd did not answer /ping with 204 within ${timeoutMs} ms (${last})\n--- influxd output ---\n${proc.output()}`);
}
