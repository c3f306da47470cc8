import type { Socket } from 'node:net';
import { Writable } from 'node:stream';
import { writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { stringify } from 'csv-stringify/sync';
import { connectAsync, type IClientOptions, type MqttClient } from 'mqtt';
import { pino, type Logger } from 'pino';
import { stringify as toYaml } from 'yaml';
import { MODELS } from '../../devices/catalogue.js';
import type { MqttModel } from '../../devices/model.js';
import type { Reading } from '../../devices/reading.js';
import { createGateway, type Gateway } from '../../gateway/app.js';
import { loadConfig } from '../../gateway/config/load.js';
import type { GatewayConfig, GatewayConfigInput } from '../../gateway/config/schema.js';
import { DEVICE_COLUMNS } from '../../gateway/registry/columns.js';
import { loadRegistry, registryContext, type DeviceRegistry } from '../../gateway/registry/registry.js';
import { hashSecret } from '../../gateway/registry/secrets.js';
import type { LoadDevice } from '../../simulators/load.js';
import { registerCleanup } from './cleanup.js';
import type { Influxd } from './influxd.js';
import { spawnProcess, type SpawnedProcess } from './process.js';
import { makeTempDir } from './tmp.js';

/*
 * A whole gridedge gateway for integration tests, on real files: a gridedge.yaml and a
 * devices.csv (secrets stored as real scrypt hashes) in a temp dir, the data directory beside
 * them. Run it in-process (createGateway: its store, pipeline and broker are at hand) or as the
 * `gridedge start` child process a user runs (so that it can be kill -9'd). Everything started
 * here is stopped and removed after the test file even when a test fails half-way.
 */

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const GRID = '110101013001002';

/** One registered MQTT device and the plain secret it connects with. */
export interface TestDevice {
  readonly id: string;
  readonly model: 'smoke-json' | 'smoke-ctw' | 'pager-json';
  readonly secret: string;
  readonly building: string;
  readonly room: string;
}

export type SinkInput = NonNullable<GatewayConfigInput['sinks']>[number];

export interface GatewaySiteOptions {
  readonly devices: readonly TestDevice[];
  /** Default: the embedded sink only. */
  readonly sinks?: readonly SinkInput[];
  readonly outboxMaxBytes?: number;
  readonly rateLimit?: { perSecond: number; burst: number };
  readonly operators?: readonly { username: string; password: string }[];
  /** MQTT port; default 0 (the OS picks one; read it from the gateway). */
  readonly port?: number;
  readonly gatewayId?: string;
}

export interface GatewaySite {
  /** The temp dir holding gridedge.yaml, devices.csv and data/. */
  readonly dir: string;
  readonly configPath: string;
  readonly dataDir: string;
  readonly dbPath: string;
  readonly devices: readonly TestDevice[];
  /** The devices as the load generator and the simulators take them. */
  readonly loadDevices: LoadDevice[];
  /** Rewrites gridedge.yaml with another MQTT port (e.g. to restart on the port of the first run). */
  setPort(port: number): Promise<void>;
}

/** `n` devices named `${prefix}-NN`, cycling through the three MQTT models unless one is given. */
export function makeDevices(prefix: string, n: number, opts: { model?: TestDevice['model']; room?: (i: number) => string; building?: string } = {}): TestDevice[] {
  const models: TestDevice['model'][] = ['smoke-json', 'smoke-ctw', 'pager-json'];
  return Array.from({ length: n }, (_, i) => {
    const id = `${prefix}-${String(i).padStart(2, '0')}`;
    return {
      id,
      model: opts.model ?? (models[i % models.length] as TestDevice['model']),
      secret: `test-secret-${id}`,
      building: opts.building ?? '7',
      room: opts.room?.(i) ?? `R${100 + i}`,
    };
  });
}

export function mqttModel(id: string): MqttModel {
  const m = MODELS.get(id);
  if (m?.transport !== 'mqtt') throw new Error(`${id} is not an MQTT model`);
  return m;
}

export function toLoadDevices(devices: readonly TestDevice[]): LoadDevice[] {
  return devices.map((d) => ({ id: d.id, secret: d.secret, model: mqttModel(d.model) }));
}

/** Writes gridedge.yaml and devices.csv (scrypt-hashed secrets) into a fresh temp dir. */
export async function writeGatewaySite(opts: GatewaySiteOptions): Promise<GatewaySite> {
  const tmp = await makeTempDir('gridedge-gw-');
  const dir = tmp.path;
  const configPath = join(dir, 'gridedge.yaml');
  const dataDir = join(dir, 'data');

  const hashes = await Promise.all(opts.devices.map((d) => hashSecret(d.secret)));
  const rows = opts.devices.map((d, i) => {
    const cells: Record<string, string> = { id: d.id, model: d.model, grid: GRID, building: d.building, room: d.room, secret: hashes[i] as string };
    return DEVICE_COLUMNS.map((c) => cells[c] ?? '');
  });
  await writeFile(join(dir, 'devices.csv'), stringify([[...DEVICE_COLUMNS], ...rows]), 'utf8');

  const writeConfig = async (port: number): Promise<void> => {
    const config = {
      gateway: { id: opts.gatewayId ?? 'gw-test', dataDir: './data' },
      site: {
        district: '110101',
        street: { code: '110101013', name: '东花市街道' },
        communities: [{ code: '001', name: '北里社区' }],
        grids: [{ code: GRID, name: '第2网格' }],
      },
      mqtt: {
        listen: { host: '127.0.0.1', port },
        ...(opts.rateLimit ? { rateLimit: opts.rateLimit } : {}),
        ...(opts.operators ? { operators: [...opts.operators] } : {}),
      },
      devices: './devices.csv',
      sinks: opts.sinks ? [...opts.sinks] : [{ type: 'embedded' }],
      ...(opts.outboxMaxBytes !== undefined ? { outbox: { maxBytes: opts.outboxMaxBytes } } : {}),
      // Port 0: never the default 8080, should the gateway serve HTTP by then.
      http: { host: '127.0.0.1', port: 0 },
    } satisfies GatewayConfigInput;
    await writeFile(configPath, `# written by tests/helpers/gateway.ts\n${toYaml(config)}`, 'utf8');
  };
  await writeConfig(opts.port ?? 0);

  return {
    dir,
    configPath,
    dataDir,
    dbPath: join(dataDir, 'gridedge.db'),
    devices: opts.devices,
    loadDevices: toLoadDevices(opts.devices),
    setPort: writeConfig,
  };
}

// ---- in-process ----------------------------------------------------------------------------

export interface InProcessGateway {
  readonly gateway: Gateway;
  readonly config: GatewayConfig;
  readonly registry: DeviceRegistry;
  readonly port: number;
  /** `mqtt://127.0.0.1:<port>` */
  readonly url: string;
  /** Every log line (pino JSON) so far. */
  logs(): string[];
  stop(): Promise<void>;
}

export interface InProcessOptions {
  /** Default `info`. */
  readonly logLevel?: string;
  /** Wraps the registry loaded from devices.csv (a test may change what it answers). */
  readonly registry?: (loaded: DeviceRegistry) => DeviceRegistry;
  /** Re-read devices.csv when it changes, as `gridedge start` does. */
  readonly watchRegistry?: boolean;
}

/** createGateway on the site's files, as `gridedge start` wires it (config and registry loaded from disk). */
export async function startGatewayInProcess(site: GatewaySite, opts: InProcessOptions = {}): Promise<InProcessGateway> {
  const config = await loadConfig(site.configPath, { env: {} });
  const load = () => loadRegistry(config.devices, registryContext(config, MODELS), { configFile: site.configPath });
  const loaded = await load();
  if (!loaded.ok) throw new Error(`registry: ${JSON.stringify(loaded.issues)}`);
  const registry = opts.registry ? opts.registry(loaded.registry) : loaded.registry;
  const lines: string[] = [];
  let pendingText = '';
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      pendingText += chunk.toString('utf8');
      let nl: number;
      while ((nl = pendingText.indexOf('\n')) >= 0) {
        lines.push(pendingText.slice(0, nl));
        pendingText = pendingText.slice(nl + 1);
      }
      cb();
    },
  });
  const logger: Logger = pino({ level: opts.logLevel ?? 'info' }, sink);
  const registrySource = opts.watchRegistry && typeof config.devices === 'string' ? { file: config.devices, load } : undefined;
  const gateway = createGateway({ config, registry, logger, ...(registrySource ? { registrySource } : {}) });
  await gateway.start();
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    handle.unregister();
    await gateway.stop();
  };
  const handle = registerCleanup(`in-process gateway ${site.dir}`, stop);
  const port = gateway.broker.ports().tcp;
  return { gateway, config, registry, port, url: `mqtt://127.0.0.1:${port}`, logs: () => [...lines], stop };
}

// ---- child process -------------------------------------------------------------------------

export interface GatewayProcess {
  readonly proc: SpawnedProcess;
  readonly pid: number;
  readonly port: number;
  readonly url: string;
  /** SIGKILL to this PID, then wait for it to be gone. */
  kill9(): Promise<void>;
  /** SIGTERM (a clean stop: the store is flushed and closed), SIGKILL after `graceMs`. */
  stop(graceMs?: number): Promise<void>;
}

const STARTED = /^gridedge \S+: MQTT on [^\s,]+:(\d+),/;

/** `node bin/gridedge.js start -c <site>/gridedge.yaml`; resolves once it says where MQTT listens. Needs `npm run build`. */
export async function spawnGateway(site: GatewaySite, opts: { logLevel?: string; startTimeoutMs?: number; nodeArgs?: readonly string[]; env?: NodeJS.ProcessEnv } = {}): Promise<GatewayProcess> {
  const proc = await spawnProcess(process.execPath, [...(opts.nodeArgs ?? []), join(ROOT, 'bin/gridedge.js'), 'start', '-c', site.configPath, '--log-level', opts.logLevel ?? 'warn'], {
    name: 'gridedge',
    cwd: site.dir,
    // Added to this process's environment (e.g. LD_PRELOAD of libfaketime).
    ...(opts.env ? { env: { ...process.env, ...opts.env } } : {}),
  });
  let line: string;
  try {
    line = await proc.waitForLine(STARTED, opts.startTimeoutMs ?? 20_000);
  } catch (err) {
    await proc.stop(2_000);
    throw err;
  }
  const port = Number(STARTED.exec(line)?.[1]);
  return {
    proc,
    pid: proc.pid,
    port,
    url: `mqtt://127.0.0.1:${port}`,
    async kill9() {
      proc.signal('SIGKILL');
      await proc.waitForExit(10_000);
    },
    async stop(graceMs = 10_000) {
      await proc.stop(graceMs);
    },
  };
}

// ---- MQTT clients -------------------------------------------------------------------------

/**
 * A plain mqtt.js client (MQTT 3.1.1, no reconnect, Nagle off), closed after the test file. As a
 * device: `{ clientId: id, username: id, password: secret }`.
 */
export async function connectMqtt(url: string, options: IClientOptions): Promise<MqttClient> {
  const client = await connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5_000, ...options });
  (client.stream as Partial<Socket> | undefined)?.setNoDelay?.(true);
  const handle = registerCleanup(`mqtt client ${options.clientId ?? ''}`, () => client.endAsync(true));
  client.once('close', () => handle.unregister());
  return client;
}

export function connectAsDevice(url: string, d: Pick<TestDevice, 'id' | 'secret'>): Promise<MqttClient> {
  return connectMqtt(url, { clientId: d.id, username: d.id, password: d.secret });
}

// ---- looking at the results ----------------------------------------------------------------

/** `deviceId@ts` of every reading in a (stopped gateway's) store file, read-only. */
export function storedKeys(dbPath: string): Set<string> {
  const db = new Database(dbPath, { readonly: true, fileMustExist: true });
  try {
    const rows = db.prepare<[], { device_id: string; ts: number }>('SELECT device_id, ts FROM readings').all();
    return new Set(rows.map((r) => `${r.device_id}@${r.ts}`));
  } finally {
    db.close();
  }
}

/** Every stored reading of one device, oldest first, from a store file read-only. */
export function storedReadings(dbPath: string, deviceId: string): Reading[] {
  const db = new Database(dbPath, { readonly: true, fileMustExist: true });
  try {
    return db
      .prepare<[string], { json: string }>('SELECT json FROM readings WHERE device_id = ? ORDER BY seq')
      .all(deviceId)
      .map((r) => JSON.parse(r.json) as Reading);
  } finally {
    db.close();
  }
}

export interface InfluxSeries {
  readonly name: string;
  readonly tags?: Record<string, string>;
  readonly columns: string[];
  readonly values: unknown[][];
}

/** InfluxQL with times as epoch milliseconds (the helper's query() returns RFC 3339). */
export async function influxQuery(influx: Pick<Influxd, 'url'>, db: string, q: string): Promise<InfluxSeries[]> {
  const body = new URLSearchParams({ q, db, epoch: 'ms' });
  const res = await fetch(`${influx.url}/query`, { method: 'POST', body, signal: AbortSignal.timeout(10_000) });
  const text = await res.text();
  if (!res.ok) throw new Error(`influxd query ${JSON.stringify(q)} → HTTP ${res.status}: ${text}`);
  const json = JSON.parse(text) as { results?: { error?: string; series?: InfluxSeries[] }[]; error?: string };
  const error = json.error ?? json.results?.find((r) => r.error)?.error;
  if (error) throw new Error(`influxd query ${JSON.stringify(q)}: ${error}`);
  return json.results?.flatMap((r) => r.series ?? []) ?? [];
}

/**
 * `deviceId@ts` of every reading point in InfluxDB (measurements smoke and pager; every reading
 * of the MQTT models has a `battery_low` field). Same series and timestamp is one point, so a
 * re-sent batch cannot inflate this.
 */
export async function influxKeys(influx: Pick<Influxd, 'url'>, db: string, where = ''): Promise<Set<string>> {
  const series = await influxQuery(influx, db, `SELECT battery_low FROM smoke, pager ${where} GROUP BY device_id`);
  const keys = new Set<string>();
  for (const s of series) {
    const id = s.tags?.device_id;
    for (const row of s.values) keys.add(`${id}@${String(row[0])}`);
  }
  return keys;
}

/** `count(battery_low)` per device id over smoke and pager (a missing database counts as empty). */
export async function influxCounts(influx: Pick<Influxd, 'url'>, db: string, where = ''): Promise<Map<string, number>> {
  let series: InfluxSeries[];
  try {
    series = await influxQuery(influx, db, `SELECT count(battery_low) FROM smoke, pager ${where} GROUP BY device_id`);
  } catch (err) {
    if (/database not found/.test((err as Error).message)) return new Map();
    throw err;
  }
  const counts = new Map<string, number>();
  for (const s of series) {
    const id = s.tags?.device_id ?? '';
    counts.set(id, (counts.get(id) ?? 0) + Number(s.values[0]?.[1] ?? 0));
  }
  return counts;
}

export function missing(expected: Iterable<string>, actual: ReadonlySet<string>): string[] {
  const out: string[] = [];
  for (const k of expected) if (!actual.has(k)) out.push(k);
  return out;
}

export async function waitUntil(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 20_000, everyMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
