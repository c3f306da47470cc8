import { resolve } from 'node:path';
import { getModel } from '../../../devices/catalogue.js';
import { createMqttDevice, type MqttDevice } from '../../../simulators/mqtt-device.js';
import { loadSummaryRows, runLoad, selectByMix, type LoadDevice, type ModelMix } from '../../../simulators/load.js';
import { createProgress, formatSummary, type ProgressLine } from '../../../simulators/progress.js';
import type { ModbusModel } from '../../../devices/model.js';
import {
  checkScenario,
  createRecordingSerialDriver,
  createSerialDriver,
  formatScenarioIssue,
  loadScenario,
  runScenario,
  scenarioDeviceIds,
  ScenarioError,
  type MeterHandle,
  type RfHandle,
  type ScenarioStep,
  type SerialDriver,
  type StepResult,
} from '../../../simulators/scenario.js';
import { loadSite, simulatedMqttDevices, siteIndex, SiteError, type SiteDevice } from '../../../simulators/site.js';
import { parseDuration } from '../../config/duration.js';
import { ConfigError } from '../../config/errors.js';
import { readDeviceSource, registryContext, validateDeviceRows } from '../../registry/registry.js';
import { EXIT, loadCliConfig, parseFlags, UsageError, type CliIo, type Command } from '../command.js';

/**
 * `gridedge simulate` (SPEC §9): simulated devices of a site against a gateway's MQTT broker.
 *
 *   --scenario FILE                      play a scenario file (simulators/scenario.ts)
 *   --rate R [--duration D] [--devices N] [--qos 0|1] [--mix m=share,…]
 *                                        load: R msg/s over N devices, then a summary
 *   (neither)                            N devices online with heartbeats, until --duration or Ctrl-C
 *
 * Devices come from `--site DIR` (its devices.csv) or from the registry of `-c gridedge.yaml`
 * (the default). Registries hold scrypt hashes, so the password is the row's plain secret when it
 * has one, else the example site's public demo rule (`dhs-demo-<id>`, examples/donghuashi/README.md).
 */

export const DEFAULT_URL = 'mqtt://127.0.0.1:1883';
const DEFAULT_LOAD_DURATION_MS = 10_000;
/** The gateway's default per-device telemetry limit (SPEC §3): above it a load test measures the limiter. */
const GATEWAY_DEFAULT_RATE_PER_DEVICE = 20;
const CONNECT_CONCURRENCY = 50;

const FLAGS = {
  url: { type: 'string', default: DEFAULT_URL },
  site: { type: 'string' },
  config: { type: 'string', short: 'c' },
  scenario: { type: 'string' },
  devices: { type: 'string' },
  rate: { type: 'string' },
  duration: { type: 'string' },
  qos: { type: 'string' },
  mix: { type: 'string' },
  heartbeat: { type: 'string' },
  serial: { type: 'string', multiple: true },
} as const;

export interface SimulateDeps {
  /** Whether stdout is a terminal (progress line); default process.stdout.isTTY. */
  readonly isTTY?: () => boolean;
  readonly columns?: () => number | undefined;
  /** Ends a run early; default: SIGINT / SIGTERM. */
  readonly signal?: AbortSignal;
  /** The serial simulators a scenario's meter and rf steps drive; default: none (the steps are listed, not played). */
  readonly serial?: () => SerialDriver | undefined;
}

export function createSimulateCommand(deps: SimulateDeps = {}): Command {
  return {
    name: 'simulate',
    summary: 'simulated devices: play a scenario, generate load, or keep N devices online',
    usage: 'gridedge simulate [--url URL] [--site DIR | -c FILE] [--scenario FILE | --rate R [--duration D] [--qos 0|1] [--mix M] | --duration D] [--devices N] [--serial BUS=PATH]…',
    details: [
      `      --url URL          the gateway's MQTT listener (default ${DEFAULT_URL})`,
      '      --site DIR         the site whose devices to simulate: DIR/devices.csv (e.g. examples/donghuashi)',
      '  -c, --config FILE      or the registry of this config (default ./gridedge.yaml)',
      '      --scenario FILE    play a scenario (see examples/donghuashi/scenario.yaml)',
      '      --rate R           load: R messages/s in all, spread over the devices',
      `      --duration D       how long (load default ${DEFAULT_LOAD_DURATION_MS / 1000}s; otherwise until Ctrl-C)`,
      '      --devices N        how many of the site\'s MQTT devices (default all)',
      '      --qos 0|1          load: QoS of the messages (default 1: every PUBACK is timed and checked)',
      '      --mix M            share of each model, e.g. smoke-json=0.6,smoke-ctw=0.3,pager-json=0.1',
      '      --heartbeat D      heartbeat period of online devices (default: each model\'s)',
      '      --serial BUS=PATH  simulate the site\'s meters or RF bridge of BUS on serial port PATH',
      '                         (repeatable; e.g. one end of a socat pty pair, the gateway on the other)',
      '',
      'Passwords: a plain secret in the CSV, else the demo rule dhs-demo-<id> of the example site.',
      'Exit codes: 0 ok, 1 a device could not connect or a message/step failed, 2 bad usage.',
    ].join('\n'),
    run: (args, io) => simulateRun(args, io, deps),
  };
}

/** The command as main.ts registers it. */
export const simulate: Command = createSimulateCommand();

interface Plan {
  readonly url: string;
  readonly scenario?: string;
  readonly devices?: number;
  readonly rate?: number;
  readonly durationMs?: number;
  readonly qos: 0 | 1;
  readonly mix?: ModelMix;
  readonly heartbeatMs?: number;
  /** `--serial BUS=PATH`: bus id → serial port of the simulator. */
  readonly serial: ReadonlyMap<string, string>;
}

function positiveNumber(flag: string, value: string | undefined, integer: boolean): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n))) {
    throw new UsageError(`--${flag} needs a ${integer ? 'whole ' : ''}number above 0, got ${JSON.stringify(value)}`);
  }
  return n;
}

function durationFlag(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const ms = parseDuration(value);
  if (ms === undefined || ms <= 0) throw new UsageError(`--${flag} needs a duration such as 500ms, 30s, 5m, got ${JSON.stringify(value)}`);
  return ms;
}

export function parseMix(text: string): ModelMix {
  const mix: Record<string, number> = {};
  for (const part of text.split(',')) {
    const [model = '', share, ...rest] = part.split('=').map((s) => s.trim());
    const n = Number(share);
    if (rest.length > 0 || share === undefined || share === '' || !Number.isFinite(n) || n < 0) throw new UsageError(`--mix: "${part}" is not model=share (e.g. smoke-json=0.6)`);
    if (getModel(model)?.transport !== 'mqtt') throw new UsageError(`--mix: ${JSON.stringify(model)} is not an MQTT model (smoke-json, smoke-ctw, pager-json)`);
    mix[model] = n;
  }
  if (Object.values(mix).every((n) => n === 0)) throw new UsageError('--mix: the shares add up to 0');
  return mix;
}

function parseSerial(specs: readonly string[] | undefined): Map<string, string> {
  const map = new Map<string, string>();
  for (const spec of specs ?? []) {
    const i = spec.indexOf('=');
    const bus = spec.slice(0, i).trim();
    const path = spec.slice(i + 1).trim();
    if (i <= 0 || path === '') throw new UsageError(`--serial: "${spec}" is not BUS=PATH (e.g. rs485-1=/dev/pts/5)`);
    if (map.has(bus)) throw new UsageError(`--serial: bus ${bus} is given twice`);
    map.set(bus, path);
  }
  return map;
}

type FlagValues = { readonly [K in keyof typeof FLAGS]?: (typeof FLAGS)[K] extends { multiple: true } ? string[] : string };

function plan(values: FlagValues): Plan {
  const url = values.url ?? DEFAULT_URL;
  if (!/^mqtts?:\/\/[^/]+/.test(url)) throw new UsageError(`--url must be mqtt://host:port or mqtts://host:port, got ${JSON.stringify(url)}`);
  if (values.site !== undefined && values.config !== undefined) throw new UsageError('give --site or -c, not both');
  if (values.scenario !== undefined && values.rate !== undefined) throw new UsageError('--scenario and --rate are two different runs: give one');
  const qos = values.qos === undefined ? 1 : values.qos === '0' ? 0 : values.qos === '1' ? 1 : undefined;
  if (qos === undefined) throw new UsageError(`--qos is 0 or 1, got ${JSON.stringify(values.qos)}`);
  const rate = positiveNumber('rate', values.rate, false);
  if (rate === undefined) {
    for (const flag of ['qos', 'mix'] as const) if (values[flag] !== undefined) throw new UsageError(`--${flag} goes with --rate (load)`);
  }
  if (values.scenario !== undefined && values.devices !== undefined) throw new UsageError('--devices does not go with --scenario: the scenario names its devices');
  const devices = positiveNumber('devices', values.devices, true);
  const durationMs = durationFlag('duration', values.duration);
  const heartbeatMs = durationFlag('heartbeat', values.heartbeat);
  const mix = values.mix === undefined ? undefined : parseMix(values.mix);
  const serial = parseSerial(values.serial);
  if (serial.size > 0 && rate !== undefined) throw new UsageError('--serial does not go with --rate: load is MQTT only');
  return {
    url,
    qos,
    serial,
    ...(values.scenario === undefined ? {} : { scenario: values.scenario }),
    ...(devices === undefined ? {} : { devices }),
    ...(rate === undefined ? {} : { rate }),
    ...(durationMs === undefined ? {} : { durationMs }),
    ...(mix === undefined ? {} : { mix }),
    ...(heartbeatMs === undefined ? {} : { heartbeatMs }),
  };
}

async function simulateRun(args: readonly string[], io: CliIo, deps: SimulateDeps): Promise<number> {
  const { values } = parseFlags(args, FLAGS, false);
  const p = plan(values);

  let site: SiteDevice[];
  try {
    site = values.site !== undefined ? [...(await loadSite(resolve(io.cwd, values.site))).devices] : await registryDevices(values.config ?? 'gridedge.yaml', io);
  } catch (err) {
    if (err instanceof SiteError) {
      io.stderr(`gridedge simulate: ${err.message}\n`);
      return EXIT.USAGE;
    }
    throw err;
  }

  const controller = new AbortController();
  const signal = deps.signal ?? controller.signal;
  const onSignal = (): void => controller.abort();
  if (!deps.signal) {
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
  }
  const progress = createProgress({
    isTTY: deps.isTTY ? deps.isTTY() : process.stdout.isTTY === true,
    ...(deps.columns ? { columns: deps.columns() } : process.stdout.columns ? { columns: process.stdout.columns } : {}),
    write: io.stdout,
  });
  try {
    if (p.scenario !== undefined) return await scenarioMode(p, p.scenario, site, io, deps, signal, progress);
    if (p.rate !== undefined) return await loadMode(p, p.rate, site, io, signal, progress);
    return await onlineMode(p, site, io, signal, progress);
  } finally {
    progress.done();
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
  }
}

/** The registry of `-c FILE`, validated as the gateway does (errors: exit 2 through main). */
async function registryDevices(configPath: string, io: CliIo): Promise<SiteDevice[]> {
  const { config, shown, display } = await loadCliConfig(configPath, io);
  const source = await readDeviceSource(config.devices, { configFile: shown, display });
  const checked = validateDeviceRows(source.rows, registryContext(config, await io.models()));
  const issues = [...source.issues, ...checked.issues];
  if (issues.length > 0) throw new ConfigError(issues);
  return checked.rows.map(({ record: r, plainSecret }) => ({
    id: r.id,
    model: r.model,
    grid: r.place.grid,
    building: r.place.building,
    room: r.place.room,
    ...(r.bus === undefined ? {} : { bus: r.bus }),
    ...(r.address === undefined ? {} : { address: r.address }),
    ...(r.rf === undefined ? {} : { rf: r.rf }),
    ...(plainSecret === undefined ? {} : { plainSecret }),
  }));
}

function pickDevices(p: Plan, site: readonly SiteDevice[]): LoadDevice[] {
  const all = simulatedMqttDevices(site);
  if (all.length === 0) throw new UsageError('the site has no MQTT devices to simulate');
  const n = p.devices ?? all.length;
  if (n > all.length) throw new UsageError(`--devices ${n}: the site has only ${all.length} MQTT devices (the gateway admits registered devices only)`);
  return selectByMix(all, n, p.mix);
}

function credentialsHint(message: string): string {
  return /CONNACK [45]|Bad username|Not authorized/i.test(message)
    ? '\n  hint: the simulators use the CSV\'s plain secret or the demo rule dhs-demo-<id>; a registry with other hashed secrets cannot be simulated'
    : '';
}

async function startAll(devices: readonly MqttDevice[], signal: AbortSignal, onStarted?: (n: number) => void): Promise<{ started: MqttDevice[]; failures: string[] }> {
  const started: MqttDevice[] = [];
  const failures: string[] = [];
  for (let i = 0; i < devices.length && !signal.aborted; i += CONNECT_CONCURRENCY) {
    const batch = devices.slice(i, i + CONNECT_CONCURRENCY);
    const results = await Promise.allSettled(batch.map((d) => d.start()));
    results.forEach((r, j) => {
      if (r.status === 'fulfilled') started.push(batch[j] as MqttDevice);
      else failures.push(r.reason instanceof Error ? r.reason.message : String(r.reason));
    });
    onStarted?.(started.length);
  }
  return { started, failures };
}

function waitFor(signal: AbortSignal, ms: number | undefined): Promise<void> {
  return new Promise((resolveWait) => {
    if (signal.aborted) return resolveWait();
    const timer = ms === undefined ? undefined : setTimeout(done, ms);
    function done(): void {
      if (timer) clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolveWait();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

// ---- scenario ---------------------------------------------------------------------------------

async function scenarioMode(p: Plan, file: string, site: readonly SiteDevice[], io: CliIo, deps: SimulateDeps, signal: AbortSignal, progress: ProgressLine): Promise<number> {
  const path = resolve(io.cwd, file);
  let scenario;
  try {
    scenario = await loadScenario(path, file);
  } catch (err) {
    if (!(err instanceof ScenarioError)) throw err;
    for (const issue of err.issues) io.stderr(`${formatScenarioIssue(issue)}\n`);
    return EXIT.USAGE;
  }
  const issues = checkScenario(scenario, siteIndex(site), file);
  if (issues.length > 0) {
    for (const issue of issues) io.stderr(`${formatScenarioIssue(issue)}\n`);
    return EXIT.USAGE;
  }

  const specs = new Map(simulatedMqttDevices(site).map((d) => [d.id, d]));
  const devices = scenarioDeviceIds(scenario).map((id) => {
    const spec = specs.get(id) as LoadDevice;
    return createMqttDevice({ url: p.url, deviceId: spec.id, secret: spec.secret, model: spec.model, ...(p.heartbeatMs === undefined ? {} : { heartbeatMs: p.heartbeatMs }) });
  });
  const serialSteps = scenario.steps.filter((s) => s.kind !== 'mqtt').length;
  const ports = p.serial.size > 0 ? await startSerial(p.serial, site) : undefined;
  const attached = deps.serial?.() ?? ports?.driver;
  const serial = attached ?? createRecordingSerialDriver();
  if (!attached && serialSteps > 0) {
    io.stderr(`gridedge simulate: note: no serial simulator is attached (--serial BUS=PATH): the scenario's ${serialSteps} meter/rf steps are listed, not played\n`);
  }

  const { started, failures } = await startAll(devices, signal);
  try {
    if (failures.length > 0) {
      io.stderr(`gridedge simulate: ${failures.length} of ${devices.length} devices could not connect: ${failures[0]}${credentialsHint(failures[0] ?? '')}\n`);
      return EXIT.FAILURE;
    }
    const byId = new Map(started.map((d) => [d.deviceId, d]));
    const total = scenario.steps.length;
    io.stdout(`scenario ${scenario.name ?? file}: ${total} steps, ${devices.length} MQTT devices on ${p.url}${scenario.loop ? ', looping (Ctrl-C stops)' : ''}\n`);
    let settled = 0;
    const t0 = Date.now();
    const report = await runScenario(scenario, {
      mqtt: (id) => byId.get(id),
      serial,
      signal,
      onStep(result) {
        settled++;
        progress.done();
        io.stdout(`${stepLine(result, attached !== undefined)}\n`);
        progress.update(`step ${settled}${scenario.loop ? '' : `/${total}`}, ${((Date.now() - t0) / 1000).toFixed(0)} s`, true);
      },
    });
    progress.done();
    io.stdout(
      formatSummary('summary', [
        ['steps', `${report.executed}${report.cycles > 1 ? ` in ${report.cycles} cycles` : ''}`],
        ['failed', report.failed.length],
        ['late by', `${report.maxLateMs} ms at most`],
        ...(report.aborted ? [['stopped', 'early (interrupted)'] as const] : []),
      ]),
    );
    return report.failed.length > 0 ? EXIT.FAILURE : EXIT.OK;
  } finally {
    await Promise.allSettled(started.map((d) => d.stop()));
    await ports?.stop();
  }
}

// ---- serial simulators ------------------------------------------------------------------------

export interface SerialSimulators {
  readonly driver: SerialDriver;
  readonly summary: string;
  stop(): Promise<void>;
}

/**
 * `--serial BUS=PATH`: on each bus, the site's meters behind one simulated RS-485 line (each
 * answering with a healthy sample until a scenario changes it), or a simulated RF bridge. Loaded
 * on demand: serialport is a native module the other runs do not need.
 */
export async function startSerial(buses: ReadonlyMap<string, string>, site: readonly SiteDevice[]): Promise<SerialSimulators> {
  const plans = [...buses].map(([bus, path]) => {
    const onBus = site.filter((d) => d.bus === bus);
    const transports = new Set(onBus.map((d) => getModel(d.model)?.transport));
    if (onBus.length === 0) throw new UsageError(`--serial ${bus}: the site has no devices on bus ${bus}`);
    if (transports.size !== 1) throw new UsageError(`--serial ${bus}: the bus mixes ${[...transports].join(' and ')} devices`);
    return { bus, path, onBus, transport: [...transports][0] };
  });
  const [{ createModbusSlave, createSimulatedMeter }, { createRfEmitter }] = await Promise.all([import('../../../simulators/modbus-slave.js'), import('../../../simulators/rf-emitter.js')]);

  const meters = new Map<string, MeterHandle>();
  const bridges = new Map<string, RfHandle>();
  const running: { stop(): Promise<void> }[] = [];
  const parts: string[] = [];
  try {
    for (const plan of plans) {
      if (plan.transport === 'modbus-rtu') {
        const slaves = new Map<number, ReturnType<typeof createSimulatedMeter>>();
        for (const d of plan.onBus) {
          if (d.address === undefined) continue;
          const meter = createSimulatedMeter({ model: getModel(d.model) as ModbusModel });
          slaves.set(d.address, meter);
          meters.set(`${plan.bus}\u0000${d.address}`, meter);
        }
        const slave = createModbusSlave({ path: plan.path, slaves });
        await slave.start();
        running.push(slave);
        parts.push(`${plan.bus}: ${slaves.size} meters on ${plan.path}`);
      } else {
        const emitter = createRfEmitter({ path: plan.path });
        await emitter.start();
        running.push(emitter);
        bridges.set(plan.bus, emitter);
        parts.push(`${plan.bus}: RF bridge on ${plan.path}`);
      }
    }
  } catch (err) {
    await Promise.allSettled(running.map((r) => r.stop()));
    throw new Error(`cannot start the serial simulators: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  return {
    driver: createSerialDriver({ meter: (t) => meters.get(`${t.bus}\u0000${t.address}`), rf: (bus) => bridges.get(bus) }),
    summary: parts.join(', '),
    async stop() {
      await Promise.allSettled(running.map((r) => r.stop()));
    },
  };
}
function describeStep(step: ScenarioStep, played: boolean): string {
  switch (step.kind) {
    case 'mqtt':
      return `${step.device} ${(step.send.events ?? []).join(',') || 'report'}`;
    case 'meter':
      return `meter ${step.meter.bus}#${step.meter.address} ${Object.entries(step.sample.state ?? {})
        .filter(([, v]) => v)
        .map(([k]) => k)
        .concat(Object.keys(step.sample.metrics ?? {}).slice(0, 3))
        .join(',')}${played ? '' : ' (not played)'}`;
    case 'rf':
      return `rf ${step.rf.bus} ${step.rf.id} ${step.keyName ?? `key ${step.key}`}${played ? '' : ' (not played)'}`;
  }
}

function stepLine(r: StepResult, serialPlayed: boolean): string {
  const at = `+${(r.startedAt / 1000).toFixed(1)}s`.padStart(8);
  const what = describeStep(r.step, r.step.kind === 'mqtt' || serialPlayed);
  return `${at}  ${what}${r.step.note ? ` — ${r.step.note}` : ''}${r.error ? `  FAILED: ${r.error}` : ''}`;
}

// ---- load -------------------------------------------------------------------------------------

async function loadMode(p: Plan, rate: number, site: readonly SiteDevice[], io: CliIo, signal: AbortSignal, progress: ProgressLine): Promise<number> {
  const devices = pickDevices(p, site);
  const durationMs = p.durationMs ?? DEFAULT_LOAD_DURATION_MS;
  const perDevice = rate / devices.length;
  if (perDevice > GATEWAY_DEFAULT_RATE_PER_DEVICE) {
    io.stderr(
      `gridedge simulate: note: ${perDevice.toFixed(1)} msg/s per device is above the gateway's default limit of ${GATEWAY_DEFAULT_RATE_PER_DEVICE}/s (mqtt.rateLimit): use more --devices to measure throughput rather than the limiter\n`,
    );
  }
  io.stdout(`load: ${rate} msg/s for ${durationMs / 1000} s over ${devices.length} devices, QoS ${p.qos}, ${p.url}\n`);
  let summary;
  try {
    summary = await runLoad({
      url: p.url,
      devices,
      connections: devices.length,
      ratePerSecond: rate,
      durationMs,
      qos: p.qos,
      signal,
      onProgress: (s) => progress.update(`${(s.elapsedMs / 1000).toFixed(1)} s  sent ${s.sent}  acked ${s.acked}  in flight ${s.inFlight}  errors ${s.errors}`),
    });
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    io.stderr(`gridedge simulate: ${message}${credentialsHint(message)}\n`);
    return EXIT.FAILURE;
  }
  progress.done();
  io.stdout(formatSummary('summary', loadSummaryRows(summary)));
  const ok = summary.errors === 0 && summary.unacked === 0 && summary.connectFailures === 0;
  return ok ? EXIT.OK : EXIT.FAILURE;
}

// ---- online devices ---------------------------------------------------------------------------

async function onlineMode(p: Plan, site: readonly SiteDevice[], io: CliIo, signal: AbortSignal, progress: ProgressLine): Promise<number> {
  const specs = pickDevices(p, site);
  const devices = specs.map((d) =>
    createMqttDevice({ url: p.url, deviceId: d.id, secret: d.secret, model: d.model, ...(p.heartbeatMs === undefined ? {} : { heartbeatMs: p.heartbeatMs }) }),
  );
  io.stdout(`${devices.length} devices on ${p.url}${p.durationMs === undefined ? ' until Ctrl-C' : ` for ${p.durationMs / 1000} s`}\n`);
  const ports = p.serial.size > 0 ? await startSerial(p.serial, site) : undefined;
  if (ports) io.stdout(`serial: ${ports.summary}\n`);
  const { started, failures } = await startAll(devices, signal, (n) => progress.update(`connecting: ${n}/${devices.length} online`));
  try {
    if (started.length === 0) {
      io.stderr(`gridedge simulate: no device could connect: ${failures[0] ?? 'interrupted'}${credentialsHint(failures[0] ?? '')}\n`);
      return EXIT.FAILURE;
    }
    if (failures.length > 0) io.stderr(`gridedge simulate: ${failures.length} devices could not connect: ${failures[0]}${credentialsHint(failures[0] ?? '')}\n`);
    const ticker = setInterval(() => progress.update(onlineLine(started)), 500);
    try {
      await waitFor(signal, p.durationMs);
    } finally {
      clearInterval(ticker);
    }
    progress.done();
    const totals = started.map((d) => d.status);
    io.stdout(
      formatSummary('summary', [
        ['devices', `${started.length} started${failures.length > 0 ? `, ${failures.length} could not connect` : ''}`],
        ['online at the end', totals.filter((s) => s.connection === 'online').length],
        ['messages sent', totals.reduce((n, s) => n + s.sent, 0)],
        ['commands received', totals.reduce((n, s) => n + s.commands.length, 0)],
        ['errors', totals.reduce((n, s) => n + s.errors, 0)],
      ]),
    );
    return failures.length > 0 ? EXIT.FAILURE : EXIT.OK;
  } finally {
    await Promise.allSettled(started.map((d) => d.stop()));
    await ports?.stop();
  }
}

function onlineLine(devices: readonly MqttDevice[]): string {
  let online = 0;
  let sent = 0;
  let commands = 0;
  for (const d of devices) {
    const s = d.status;
    if (s.connection === 'online') online++;
    sent += s.sent;
    commands += s.commands.length;
  }
  return `${online}/${devices.length} online  sent ${sent}  commands ${commands}`;
}
