import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isMap, isSeq, parseDocument } from 'yaml';
import type { Incident, IncidentManager } from '../../../rules/incidents/index.js';
import { createMqttDevice, type MqttDevice } from '../../../simulators/mqtt-device.js';
import {
  checkScenario,
  createRecordingSerialDriver,
  formatScenarioIssue,
  loadScenario,
  runScenario,
  scenarioDeviceIds,
  ScenarioError,
  type Scenario,
  type SerialDriver,
} from '../../../simulators/scenario.js';
import { loadSite, simulatedMqttDevices, siteIndex, type SiteDevice } from '../../../simulators/site.js';
import { createGateway } from '../../app.js';
import { parseDuration } from '../../config/duration.js';
import { ConfigError } from '../../config/errors.js';
import { parseConfig } from '../../config/load.js';
import type { GatewayConfig } from '../../config/schema.js';
import { createPtyPair, onPath, type PtyPair } from '../../demo/pty.js';
import { createLogger } from '../../logger.js';
import { loadRegistry, registryContext } from '../../registry/registry.js';
import { EXIT, parseFlags, printWarnings, UsageError, type CliIo, type Command } from '../command.js';
import { startSerial, type SerialSimulators } from './simulate.js';

/**
 * `gridedge demo` (SPEC §9): the example site of 东花市街道 (examples/donghuashi) in one process —
 * the gateway on its config, the serial buses on socat pseudo-terminal pairs with simulated meters
 * and an RF bridge behind them, the scenario's MQTT devices, and the reference scenario (SPEC §10)
 * played round after round. Every incident change is printed as one line.
 *
 * Rounds: the scenario plays once, then the demo waits the critical escalation delay (+10 s) so
 * the unacknowledged SOS is seen escalating, then resolves what is still active (actor `demo`) so
 * that the next round raises new incidents instead of folding into the old ones.
 */

const LEVELS = new Set(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']);
const POLL_MS = 500;
const ROUND_GRACE_MS = 10_000;
const DEMO_ACTOR = 'demo';
const DEMO_TOKENS = [
  ['admin', 'admin', 'all grids', 'demo-token-admin-dhs07'],
  ['dispatcher', 'dispatcher', 'all grids', 'demo-token-dispatcher-dhs07'],
  ['wang', 'grid_worker', '第2网格', 'demo-token-wang-dhs07'],
] as const;
/** The example config's serial buses: each gets a pty pair in the demo. */
const EXAMPLE_BUSES = ['rs485-1', 'rs485-2', 'rf-1'] as const;

const FLAGS = {
  port: { type: 'string', default: '1883' },
  'http-port': { type: 'string', default: '8080' },
  data: { type: 'string' },
  duration: { type: 'string' },
  scenario: { type: 'string' },
  'log-level': { type: 'string', default: 'warn' },
} as const;

/** examples/donghuashi of the package, found from this file (source or dist), not the cwd. */
export function exampleDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = join(dir, 'examples', 'donghuashi');
    if (existsSync(join(candidate, 'gridedge.yaml'))) return candidate;
    const up = dirname(dir);
    if (up === dir) throw new Error('cannot find examples/donghuashi in the gridedge package');
    dir = up;
  }
}

/** The example gridedge.yaml, edited for the demo (the file itself is never written). */
export function demoConfigText(
  source: string,
  options: { dataDir: string; port: number; httpPort?: number; serial?: ReadonlyMap<string, string>; devicesFile?: string },
): string {
  // Edited as a YAML document, not as text: comments and layout stay, and a missing key fails loudly.
  const doc = parseDocument(source);
  const set = (path: readonly (string | number)[], value: unknown): void => {
    if (!doc.hasIn(path)) throw new Error(`the example config has changed: it has no ${path.join('.')}`);
    doc.setIn(path, value);
  };
  set(['gateway', 'dataDir'], options.dataDir);
  // Loopback only: the demo's secrets and tokens are public (examples/donghuashi/README.md).
  set(['mqtt', 'listen', 'host'], '127.0.0.1');
  set(['mqtt', 'listen', 'port'], options.port);
  if (options.httpPort !== undefined) {
    set(['http', 'host'], '127.0.0.1');
    set(['http', 'port'], options.httpPort);
  }
  const buses = doc.get('serial');
  if (!isSeq(buses)) throw new Error('the example config has changed: it has no serial list');
  if (options.serial) {
    for (const [bus, path] of options.serial) {
      const i = buses.items.findIndex((item) => isMap(item) && item.get('id') === bus);
      if (i < 0) throw new Error(`the example config has changed: it has no serial bus ${bus}`);
      set(['serial', i, 'path'], path);
    }
  } else {
    doc.set('serial', doc.createNode([]));
  }
  if (options.devicesFile !== undefined) set(['devices'], options.devicesFile);
  return doc.toString();
}

/** The CSV without the rows of serial devices (for a demo without socat). */
export function withoutSerialRows(csv: string, devices: readonly SiteDevice[]): string {
  const drop = new Set(devices.filter((d) => d.bus !== undefined).map((d) => d.line));
  return csv
    .split('\n')
    .filter((_, i) => !drop.has(i + 1))
    .join('\n');
}

function durationFlag(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const ms = parseDuration(value);
  if (ms === undefined || ms <= 0) throw new UsageError(`--duration needs a duration such as 30s, 5m, got ${JSON.stringify(value)}`);
  return ms;
}

function portFlag(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isInteger(n) || n < 0 || n > 65_535) throw new UsageError(`--port needs a port number 0–65535 (0: any free port), got ${JSON.stringify(value)}`);
  return n;
}

const clockTime = (at: number): string => new Date(at).toLocaleTimeString('en-GB', { timeZone: 'Asia/Shanghai', hour12: false });

/** One incident change as a person reads it. */
export function incidentLine(incident: Incident, gridName: (code: string) => string | undefined, isNew: boolean): string {
  const place = [incident.place.building ? `building ${incident.place.building}` : '', incident.place.room ? `room ${incident.place.room}` : ''].filter(Boolean).join(' ');
  const grid = gridName(incident.grid) ?? incident.grid;
  return `${clockTime(incident.updatedAt)}  ${isNew ? 'NEW   ' : 'CHANGE'}  ${incident.type} ${incident.severity}  ${grid} (${incident.grid})${place ? ` ${place}` : ''}  level ${incident.level}  ${incident.status}  [${incident.id} v${incident.version}]`;
}

/**
 * Prints incident changes, polling the manager by version: a new incident, and any change of its
 * status, level or severity. A repeat folded in (count, lastSeenAt) is not worth a line.
 */
function watchIncidents(manager: IncidentManager, config: GatewayConfig, io: CliIo): { poll(): void; stop(): void } {
  const seen = new Map<string, { version: number; shown: string }>();
  const names = new Map(config.site.grids.map((g) => [g.code, g.name]));
  const poll = (): void => {
    const changed = manager
      .list({})
      .filter((i) => (seen.get(i.id)?.version ?? 0) < i.version)
      .sort((a, b) => a.updatedAt - b.updatedAt || a.id.localeCompare(b.id));
    for (const i of changed) {
      const before = seen.get(i.id);
      const shown = `${i.status}|${i.level}|${i.severity}`;
      if (before?.shown !== shown) io.stdout(`${incidentLine(i, (code) => names.get(code), before === undefined)}\n`);
      seen.set(i.id, { version: i.version, shown });
    }
  };
  const timer = setInterval(() => {
    try {
      poll();
    } catch {
      // The store closes at shutdown; the last poll happens before that.
    }
  }, POLL_MS);
  return { poll, stop: () => clearInterval(timer) };
}

/** Resolves the round's still-active incidents so that the next round opens new ones. */
function resolveActive(manager: IncidentManager): void {
  for (const i of manager.list({ status: ['open', 'acknowledged', 'dispatched'] })) {
    try {
      if (i.status === 'open') manager.transition(i.id, 'ack', DEMO_ACTOR, 'demo: end of the round');
      manager.transition(i.id, 'resolve', DEMO_ACTOR, 'demo: end of the round');
    } catch {
      // Changed meanwhile (e.g. cancelled): nothing to do.
    }
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolveSleep) => {
    if (signal.aborted) return resolveSleep();
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolveSleep();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

export const demo: Command = {
  name: 'demo',
  summary: 'the gateway with the simulated 东花市 community and the reference scenario',
  usage: 'gridedge demo [--port 1883] [--http-port 8080] [--data DIR] [--duration D] [--scenario FILE]',
  details: [
    '      --port N           MQTT port on 127.0.0.1 (default 1883; 0: any free port)',
    '      --http-port N      HTTP API port on 127.0.0.1 (default 8080; 0: any free port)',
    '      --data DIR         the data directory (default: a fresh temp dir, kept at the end)',
    '      --duration D       stop after D (e.g. 30s, 10m); default: until Ctrl-C',
    '      --scenario FILE    another scenario of the example site (default examples/donghuashi/scenario.yaml)',
    '      --log-level LVL    gateway logs on stdout as JSON lines (default warn)',
    '',
    'Serial buses run on socat pseudo-terminal pairs; without socat the demo runs without them.',
  ].join('\n'),
  run: (args, io) => demoRun(args, io),
};

async function demoRun(args: readonly string[], io: CliIo): Promise<number> {
  const { values } = parseFlags(args, FLAGS, false);
  const port = portFlag(values.port);
  const httpPort = portFlag(values['http-port']);
  const durationMs = durationFlag(values.duration);
  const level = values['log-level'];
  if (!LEVELS.has(level)) throw new UsageError(`--log-level must be one of ${[...LEVELS].join(', ')}`);

  const example = exampleDir();
  const exampleConfig = join(example, 'gridedge.yaml');
  const scenarioFile = values.scenario === undefined ? join(example, 'scenario.yaml') : resolve(io.cwd, values.scenario);
  const site = await loadSite(join(example, 'devices.csv'));
  let scenario: Scenario;
  try {
    scenario = await loadScenario(scenarioFile, values.scenario ?? 'examples/donghuashi/scenario.yaml');
  } catch (err) {
    if (!(err instanceof ScenarioError)) throw err;
    for (const issue of err.issues) io.stderr(`${formatScenarioIssue(issue)}\n`);
    return EXIT.USAGE;
  }
  const scenarioIssues = checkScenario(scenario, siteIndex(site.devices), values.scenario ?? 'scenario.yaml');
  if (scenarioIssues.length > 0) {
    for (const issue of scenarioIssues) io.stderr(`${formatScenarioIssue(issue)}\n`);
    return EXIT.USAGE;
  }

  const dataDir = values.data === undefined ? await mkdtemp(join(tmpdir(), 'gridedge-demo-')) : resolve(io.cwd, values.data);
  await mkdir(dataDir, { recursive: true });
  // The pty links and a filtered registry live apart from the data, and go at the end.
  const work = await mkdtemp(join(tmpdir(), 'gridedge-demo-run-'));
  const ptys: PtyPair[] = [];
  const devices: MqttDevice[] = [];
  let serialSims: SerialSimulators | undefined;
  let gateway: ReturnType<typeof createGateway> | undefined;
  let watcher: ReturnType<typeof watchIncidents> | undefined;
  const controller = new AbortController();
  const onSignal = (): void => controller.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const timer = durationMs === undefined ? undefined : setTimeout(onSignal, durationMs);

  try {
    const hasSocat = onPath('socat');
    let serial: Map<string, string> | undefined;
    if (hasSocat) {
      serial = new Map();
      const sims = new Map<string, string>();
      for (const bus of EXAMPLE_BUSES) {
        const pair = await createPtyPair(join(work, `${bus}-gateway`), join(work, `${bus}-device`));
        ptys.push(pair);
        serial.set(bus, pair.a);
        sims.set(bus, pair.b);
      }
      serialSims = await startSerial(sims, site.devices);
    } else {
      io.stderr('gridedge demo: note: socat is not on PATH: running without the serial buses (no meters, no RF pagers; the scenario\'s meter/rf steps are skipped). Install socat for the whole demo.\n');
    }
    let devicesFile: string | undefined;
    if (!serial) {
      devicesFile = join(work, 'devices.csv');
      await writeFile(devicesFile, withoutSerialRows(await readFile(site.file, 'utf8'), site.devices));
    }
    const text = demoConfigText(await readFile(exampleConfig, 'utf8'), { dataDir, port, httpPort, ...(serial ? { serial } : {}), ...(devicesFile ? { devicesFile } : {}) });
    const config = parseConfig(text, { file: exampleConfig, shown: 'examples/donghuashi/gridedge.yaml (demo)', ...(io.env ? { env: io.env } : {}) });
    const loaded = await loadRegistry(config.devices, registryContext(config, await io.models()), {
      configFile: 'examples/donghuashi/gridedge.yaml (demo)',
      display: (p) => p,
      ...(io.hash ? { hash: io.hash } : {}),
    });
    if (!loaded.ok) throw new ConfigError(loaded.issues);
    printWarnings(io, loaded.warnings);

    gateway = createGateway({ config, registry: loaded.registry, logger: createLogger({ level }) });
    await gateway.start();
    const mqttPort = gateway.broker.ports().tcp;
    const url = `mqtt://127.0.0.1:${mqttPort}`;
    const holdMs = (config.escalation.critical ?? 0) + ROUND_GRACE_MS;

    const lines = [
      `gridedge demo: 东花市街道 example site, gateway ${config.gateway.id}, ${loaded.registry.size} devices in ${config.site.grids.length} grids`,
      `  MQTT        ${url} (127.0.0.1 only: the demo's device secrets dhs-demo-<id> are public)`,
      `  data        ${dataDir} (kept at the end)`,
      `  serial      ${serialSims ? `${serialSims.summary} (socat pids ${ptys.map((p) => p.pid).join(', ')})` : 'none (socat not found)'}`,
      '  uplink      none: the demo runs stand-alone (no city platform)',
      `  dashboard   http://${config.http.host}:${gateway.httpPort()}/ (log in with a token below)`,
      `  http api    http://${config.http.host}:${gateway.httpPort()}/api/incidents (Authorization: Bearer <token>)`,
      '  logins      Authorization: Bearer <token>',
      ...DEMO_TOKENS.map(([user, role, grids, token]) => `                ${user.padEnd(11)} ${role.padEnd(12)} ${grids.padEnd(10)} ${token}`),
      `  scenario    ${scenario.name ?? scenarioFile}: ${scenario.steps.length} steps over ${scenario.period / 1000} s, then ${holdMs / 1000} s to watch escalation; at the end of each round the demo resolves what is still open, then the next round starts`,
      `  stop        ${durationMs === undefined ? 'Ctrl-C' : `after ${durationMs / 1000} s (or Ctrl-C)`}`,
      '',
      'incidents:',
    ];
    io.stdout(`${lines.join('\n')}\n`);

    const specs = new Map(simulatedMqttDevices(site.devices).map((d) => [d.id, d]));
    for (const id of scenarioDeviceIds(scenario)) {
      const spec = specs.get(id);
      if (spec) devices.push(createMqttDevice({ url, deviceId: spec.id, secret: spec.secret, model: spec.model }));
    }
    const started = await Promise.allSettled(devices.map((d) => d.start()));
    const failed = started.find((r) => r.status === 'rejected');
    if (failed) {
      io.stderr(`gridedge demo: a simulated device could not connect: ${String(failed.reason instanceof Error ? failed.reason.message : failed.reason)}\n`);
      return EXIT.FAILURE;
    }
    const byId = new Map(devices.map((d) => [d.deviceId, d]));
    const driver: SerialDriver = serialSims?.driver ?? createRecordingSerialDriver();
    // Without the buses, meter and rf steps go to a recorder (they have no device to reach).
    const playable: Scenario = { ...scenario, loop: false };

    watcher = watchIncidents(gateway.safety.manager, config, io);
    const manager = gateway.safety.manager;
    for (let round = 1; !controller.signal.aborted; round++) {
      io.stdout(`--- round ${round} (${clockTime(Date.now())})\n`);
      const report = await runScenario(playable, { mqtt: (id) => byId.get(id), serial: driver, signal: controller.signal });
      for (const f of report.failed) io.stderr(`gridedge demo: step ${f.step.index + 1} failed: ${f.error ?? 'failed'}\n`);
      await sleep(holdMs, controller.signal);
      if (controller.signal.aborted) break;
      watcher.poll();
      resolveActive(manager);
    }
    watcher.poll();
    io.stdout(`stopping; the data stays in ${dataDir}\n`);
    return EXIT.OK;
  } finally {
    if (timer) clearTimeout(timer);
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    watcher?.stop();
    await Promise.allSettled(devices.map((d) => d.stop()));
    await serialSims?.stop();
    await gateway?.stop();
    await Promise.allSettled(ptys.map((p) => p.stop()));
    await rm(work, { recursive: true, force: true });
  }
}
