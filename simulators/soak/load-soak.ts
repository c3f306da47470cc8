import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { getModel } from '../../devices/catalogue.js';
import type { EncodeSample, MqttModel } from '../../devices/model.js';
import { runLoad, type LoadDevice, type LoadSummary } from '../load.js';
import { startSoakGateway, type SoakGateway } from './gateway.js';

/*
 * The load soak of issue 8 item 3, once, for the CI test (tests/integration/soak/load-soak.test.ts)
 * and the 10-minute script (scripts/soak/load.mjs): `gridedge start` as a child process with N
 * registered devices, N device connections (runLoad, one client each), then for D seconds a
 * steady R msg/s of telemetry plus every device's heartbeat at its cadence and now and then an
 * alarm (a fire alarm from a detector, an SOS from a pager), all QoS 1 with the PUBACK ledger.
 * Every few seconds the gateway's RSS (/proc/<pid>/status VmRSS), CPU (/proc/<pid>/stat) and
 * event-loop delay (prom-client's nodejs_eventloop_lag_* on GET /metrics: perf_hooks'
 * monitorEventLoopDelay, reset at each scrape, so each sample covers the interval since the last)
 * are sampled. At the end the gateway is stopped and its stores are read back: every PUBACKed
 * reading must be in readings, every PUBACKed alarm must have made exactly one incident of its
 * rule, and no device that sent no alarm may have one.
 *
 * Registry: every device shares one secret and one scrypt hash (given by the caller: simulators/
 * may not import gateway/), as scripts/bench/scale.mjs does, so that writing 10k rows does not
 * cost 10k scrypt runs. The gateway still runs one scrypt per device at its first CONNECT (its
 * auth cache is per device id), so the connect phase costs what 10k real devices would.
 * Each device has a room of its own, so two alarms never confirm each other (fire.confirmed).
 */

const MODEL_IDS = ['smoke-json', 'smoke-ctw', 'pager-json'] as const;
const GRID = '110101013001002';
/** The rule each model's alarm must trigger (rules/default-rules.yaml). */
const ALARM_OF: Readonly<Record<string, { readonly event: string; readonly rule: string }>> = {
  smoke: { event: 'fire_alarm', rule: 'fire' },
  pager: { event: 'sos', rule: 'sos' },
};

export interface SoakBounds {
  /**
   * Lowest RSS in the last third of the soak minus the lowest in the first third after warm-up.
   * The lowest samples are the troughs after V8's major GCs when a window holds one: the gateway's
   * heap is a sawtooth (measured: 170 → 450 MiB used, then a major GC back to 170), so a bound on
   * peaks, or on any two single samples, would measure where in the sawtooth they fell.
   */
  readonly rssGrowthMiB: number;
  /** Largest sampled event-loop delay: only a blocked loop trips this. */
  readonly eventLoopMaxMs: number;
}

/**
 * Zero loss (checked apart), ≤ 192 MiB of RSS growth between the first and last thirds of the soak,
 * no event-loop stall of 2 s that waiting for a CPU does not explain. 192 MiB: above the heap ramp
 * of a healthy gateway in a 60 s run that holds no major GC (measured 69–96 MiB; the heap grows up
 * to ~3.3 MiB/s at 2,333 msg/s until V8 collects, then falls back to ~170 MiB), and below what a
 * leak of 1.4 KiB a message adds in 60 s (or of 150 bytes a message in the 10-minute run).
 */
export const DEFAULT_BOUNDS: SoakBounds = { rssGrowthMiB: 192, eventLoopMaxMs: 2_000 };

export interface LoadSoakOptions {
  /** Registered and connected devices (smoke-json, smoke-ctw, pager-json in turn). */
  readonly devices: number;
  /** Telemetry messages per second over all devices, besides heartbeats. */
  readonly ratePerSecond: number;
  /** Soak length after every device has connected. */
  readonly durationS: number;
  /** Heartbeat period of every device; default: its model's cadence (smoke 30 min, pager 7.5 min). */
  readonly heartbeatS?: number;
  /** Alarms per minute, each from a device that has not alarmed before; default 60. */
  readonly alarmsPerMinute?: number;
  /** Default 5 s. */
  readonly sampleEveryS?: number;
  /** Idle seconds after the drain, devices still connected, before the end RSS is read; default 20. */
  readonly settleS?: number;
  /** Soak seconds left out of the growth figure (caches, JIT, SQLite pages filling); default 20 % of the soak. */
  readonly warmupS?: number;
  /**
   * Unacknowledged messages a device may have; default 2. A device waits for its PUBACK (a real
   * detector holds one message), so a gateway that falls behind shows as `throttled` messages and
   * PUBACK latency instead of an unbounded backlog in its memory that the growth bound would blame
   * on a leak.
   */
  readonly maxInFlight?: number;
  /** Connections opened at once; default 200. */
  readonly connectConcurrency?: number;
  /** The secret every device connects with, and its scrypt hash as devices.csv holds it. */
  readonly secret: string;
  readonly secretHash: string;
  /** `bin/gridedge.js`; default found from this file. */
  readonly gridedgeBin?: string;
  /** Where the site and data go; default a fresh temp dir, removed at the end. */
  readonly workDir?: string;
  readonly bounds?: SoakBounds;
  /** The gateway's PID once it runs (a test registers a last-resort kill). */
  readonly onGatewayStarted?: (pid: number) => void;
  readonly onSample?: (sample: SoakSample) => void;
  readonly onPhase?: (text: string) => void;
}

/** `settle`: the load has stopped and every PUBACK came; the devices stay connected, idle. `closed`: they have disconnected. */
export type SoakPhase = 'connect' | 'soak' | 'drain' | 'settle' | 'closed';

export interface SoakSample {
  /** Seconds since the gateway started. */
  readonly atS: number;
  readonly phase: SoakPhase;
  readonly rssMiB: number;
  /** Of one core, since the previous sample. */
  readonly cpuPct: number;
  /**
   * Share of the interval the gateway's main thread was runnable but waiting for a CPU
   * (/proc/<pid>/task/<pid>/schedstat): high means the box starved it, which shows as event-loop
   * delay that the gateway did not cause.
   */
  readonly runQueuePct: number;
  /** The same, ms: an upper bound of the event-loop delay the box, not the gateway, caused in the interval. */
  readonly runQueueMs: number;
  /** Event-loop delay since the previous scrape; undefined when the scrape failed. */
  readonly lagP50Ms?: number;
  readonly lagP99Ms?: number;
  readonly lagMaxMs?: number;
  readonly heapUsedMiB?: number;
  readonly mqttClients?: number;
  readonly sent: number;
  readonly acked: number;
  readonly inFlight: number;
}

export interface SoakCheck {
  readonly name: string;
  readonly ok: boolean;
  readonly detail: string;
}

export interface LoadSoakResult {
  readonly options: { devices: number; ratePerSecond: number; durationS: number; heartbeatS: number | 'model'; alarmsPerMinute: number; warmupS: number };
  readonly samples: readonly SoakSample[];
  readonly connectS: number;
  readonly gatewayStartS: number;
  readonly load: Omit<LoadSummary, 'ledger'>;
  readonly heartbeatsSent: number;
  readonly telemetrySent: number;
  readonly stored: number;
  /** PUBACKed readings not in the store (the first 20 keys) and how many. */
  readonly missing: { readonly count: number; readonly sample: readonly string[] };
  readonly droppedTelemetry: number;
  readonly alarms: { readonly sent: number; readonly acked: number; readonly withIncident: number; readonly missing: readonly string[]; readonly duplicated: readonly string[]; readonly spurious: readonly string[] };
  /** baseline/end: lowest RSS of the first/last third of the soak after warm-up; settled: after the load, devices connected. */
  readonly rss: {
    readonly startMiB: number;
    readonly connectedMiB: number;
    readonly baselineMiB: number;
    readonly endMiB: number;
    readonly growthMiB: number;
    readonly maxMiB: number;
    readonly settledMiB: number;
    readonly settledHeapMiB: number;
  };
  /** Event-loop delay over the soak samples (the connect phase's worst apart), and the main thread's run-queue wait. */
  readonly lag: {
    readonly p50MedianMs: number;
    readonly p99MedianMs: number;
    readonly p99MaxMs: number;
    readonly maxMs: number;
    /** Max over the soak samples of (delay max − the main thread's run-queue wait in that interval). */
    readonly ownMaxMs: number;
    readonly scrapesAnswered: number;
    readonly scrapes: number;
    readonly connectMaxMs: number;
    readonly runQueueSoakPct: number;
    readonly runQueueConnectPct: number;
  };
  readonly cpuSoakPct: number;
  readonly checks: readonly SoakCheck[];
  readonly ok: boolean;
  /** The gateway's exit code after SIGTERM (null: it had to be killed). */
  readonly gatewayExit: number | null;
}

/** The repository root: the nearest directory above this file with bin/gridedge.js (src and dist differ in depth). */
function findGridedgeBin(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const bin = join(dir, 'bin/gridedge.js');
    if (existsSync(bin)) return bin;
    dir = dirname(dir);
  }
  throw new Error('bin/gridedge.js not found above simulators/soak; pass gridedgeBin');
}

export function soakDevices(n: number, secret: string): LoadDevice[] {
  const models = MODEL_IDS.map((id) => getModel(id) as MqttModel);
  return Array.from({ length: n }, (_, i) => ({ id: `SOAK-${String(i).padStart(5, '0')}`, secret, model: models[i % models.length] as MqttModel }));
}

function writeSite(dir: string, devices: readonly LoadDevice[], secretHash: string): string {
  // SPEC §11 header. A room of its own per device: 100 rooms a building.
  const header = 'id,model,grid,building,room,secret,bus,address,rf,heartbeat,resident_name,resident_phone';
  const rows = devices.map((d, i) => `${d.id},${d.model.id},${GRID},${Math.floor(i / 100) + 1},R${100 + (i % 100)},${secretHash},,,,,,`);
  writeFileSync(join(dir, 'devices.csv'), `${[header, ...rows].join('\n')}\n`);
  const config = join(dir, 'gridedge.yaml');
  writeFileSync(
    config,
    [
      '# written by simulators/soak/load-soak.ts',
      'gateway: { id: gw-soak, dataDir: ./data }',
      'site:',
      '  district: "110101"',
      '  street: { code: "110101013", name: 东花市街道 }',
      '  communities: [{ code: "001", name: 北里社区 }]',
      `  grids: [{ code: "${GRID}", name: 第2网格 }]`,
      'mqtt:',
      '  listen: { host: 127.0.0.1, port: 0 }',
      'devices: ./devices.csv',
      'sinks:',
      '  - { type: embedded }',
      'http: { host: 127.0.0.1, port: 0 }',
      '',
    ].join('\n'),
  );
  return config;
}

function rssMiBOf(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

/** utime + stime, seconds (Linux USER_HZ = 100). */
function cpuSecondsOf(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

/** Nanoseconds the main thread of `pid` has waited on a run queue. */
function runQueueNsOf(pid: number): number {
  try {
    return Number(readFileSync(`/proc/${pid}/task/${pid}/schedstat`, 'utf8').split(' ')[1] ?? 0);
  } catch {
    return 0;
  }
}

/** The label-less value of one metric in a Prometheus text exposition. */
export function metricValue(text: string, name: string): number | undefined {
  const m = new RegExp(`^${name}(?:\\{\\})? (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : undefined;
}

/** Sum of every series of one metric (any labels). */
export function metricSum(text: string, name: string): number {
  let sum = 0;
  for (const m of text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'gm'))) sum += Number(m[1]);
  return sum;
}

async function scrape(httpUrl: string): Promise<string | undefined> {
  try {
    const res = await fetch(`${httpUrl}/metrics`, { signal: AbortSignal.timeout(10_000) });
    return res.ok ? await res.text() : undefined;
  } catch {
    return undefined;
  }
}

function median(values: readonly number[]): number {
  if (values.length === 0) return 0;
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

const round1 = (n: number): number => Math.round(n * 10) / 10;

export async function runLoadSoak(options: LoadSoakOptions): Promise<LoadSoakResult> {
  const { ratePerSecond, durationS } = options;
  if (!(options.devices >= 1) || !(ratePerSecond > 0) || !(durationS > 0)) throw new RangeError('devices, ratePerSecond and durationS must be positive');
  const bounds = options.bounds ?? DEFAULT_BOUNDS;
  const sampleEveryMs = (options.sampleEveryS ?? 5) * 1000;
  const warmupS = options.warmupS ?? durationS * 0.2;
  const alarmsPerMinute = options.alarmsPerMinute ?? 60;
  const settleS = options.settleS ?? 20;
  const phase = options.onPhase ?? (() => undefined);
  const ownWork = options.workDir === undefined;
  const work = options.workDir ?? mkdtempSync(join(tmpdir(), 'gridedge-soak-'));
  const devices = soakDevices(options.devices, options.secret);

  // Heartbeats ride on the same round-robin stream as telemetry: with T msg/s over N devices each
  // device speaks every N/T s, and every k-th of its messages is a heartbeat, k = period × T / N.
  const heartbeatMsOf = (d: LoadDevice): number => (options.heartbeatS !== undefined ? options.heartbeatS * 1000 : d.model.heartbeatMs);
  const heartbeatRate = devices.reduce((sum, d) => sum + 1000 / heartbeatMsOf(d), 0);
  const totalRate = ratePerSecond + heartbeatRate;
  const everyK = new Map<string, number>(devices.map((d) => [d.id, Math.max(1, Math.round((heartbeatMsOf(d) / 1000) * (totalRate / devices.length)))]));
  const alarmEveryMessages = alarmsPerMinute > 0 ? (totalRate * 60) / alarmsPerMinute : Number.POSITIVE_INFINITY;
  const alarmed = new Map<string, number>(); // device id → seq of its alarm
  let issuedSamples = 0;
  let alarmsDue = 0;
  let heartbeatsSent = 0;
  let telemetrySent = 0;
  const sample = (d: LoadDevice, seq: number): EncodeSample => {
    issuedSamples++;
    const metrics = { battery_pct: 80 + (seq % 20), rssi_dbm: -60 - (seq % 30) };
    if (issuedSamples >= (alarmsDue + 1) * alarmEveryMessages && !alarmed.has(d.id) && alarmed.size < devices.length) {
      alarmsDue++;
      alarmed.set(d.id, seq);
      return { events: [ALARM_OF[d.model.kind]?.event ?? 'heartbeat'], metrics };
    }
    if (seq % (everyK.get(d.id) ?? 1) === 0) {
      heartbeatsSent++;
      return { events: ['heartbeat'], metrics };
    }
    telemetrySent++;
    return { metrics };
  };

  const samples: SoakSample[] = [];
  let gateway: SoakGateway | undefined;
  let sampler: ReturnType<typeof setInterval> | undefined;
  try {
    const config = writeSite(work, devices, options.secretHash);
    const t0 = performance.now();
    gateway = await startSoakGateway(options.gridedgeBin ?? findGridedgeBin(), config, work);
    const gatewayStartS = gateway.startMs / 1000;
    const gw = { pid: gateway.child.pid, url: gateway.url, httpUrl: gateway.httpUrl, child: gateway.child };
    options.onGatewayStarted?.(gw.pid);
    phase(`gateway pid ${gw.pid} up in ${gatewayStartS.toFixed(1)} s (${gw.url}, ${gw.httpUrl}); connecting ${devices.length} devices`);
    const startMiB = rssMiBOf(gw.pid);

    let current: SoakPhase = 'connect';
    const progress = { sent: 0, acked: 0, inFlight: 0 };
    let lastCpu = cpuSecondsOf(gw.pid);
    let lastWait = runQueueNsOf(gw.pid);
    let lastAt = performance.now();
    let sampling = false;
    let droppedTelemetry = 0;
    const takeSample = async (closing?: SoakPhase): Promise<void> => {
      if (sampling) return; // a slow scrape is not stacked on another
      sampling = true;
      // A sample covers the interval before it: the one taken as the soak begins closes the connect phase.
      const samplePhase = closing ?? current;
      try {
        const text = await scrape(gw.httpUrl);
        const now = performance.now();
        const cpu = cpuSecondsOf(gw.pid);
        const wait = runQueueNsOf(gw.pid);
        const s: SoakSample = {
          atS: round1((now - t0) / 1000),
          phase: samplePhase,
          rssMiB: round1(rssMiBOf(gw.pid)),
          cpuPct: round1(((cpu - lastCpu) / Math.max((now - lastAt) / 1000, 0.001)) * 100),
          runQueuePct: round1(((wait - lastWait) / 1e6 / Math.max(now - lastAt, 1)) * 100),
          runQueueMs: Math.round((wait - lastWait) / 1e6),
          ...(text === undefined
            ? {}
            : {
                lagP50Ms: round1((metricValue(text, 'nodejs_eventloop_lag_p50_seconds') ?? 0) * 1000),
                lagP99Ms: round1((metricValue(text, 'nodejs_eventloop_lag_p99_seconds') ?? 0) * 1000),
                lagMaxMs: round1((metricValue(text, 'nodejs_eventloop_lag_max_seconds') ?? 0) * 1000),
                heapUsedMiB: round1((metricValue(text, 'nodejs_heap_size_used_bytes') ?? 0) / 1024 ** 2),
                mqttClients: metricValue(text, 'gridedge_mqtt_clients') ?? 0,
              }),
          ...progress,
        };
        if (text !== undefined) droppedTelemetry = metricSum(text, 'gridedge_dropped_telemetry_total');
        lastCpu = cpu;
        lastWait = wait;
        lastAt = now;
        samples.push(s);
        options.onSample?.(s);
      } finally {
        sampling = false;
      }
    };
    // Reset the delay histogram so that the first sample covers the connect phase only.
    await scrape(gw.httpUrl);
    sampler = setInterval(() => void takeSample(), sampleEveryMs);

    let connectedAt = 0;
    let soakEndAt = 0;
    let cpuAtConnected = 0;
    let connectedMiB = 0;
    const summary = await runLoad({
      url: gw.url,
      devices,
      ratePerSecond: totalRate,
      durationMs: durationS * 1000,
      qos: 1,
      drainMs: 60_000,
      maxInFlight: options.maxInFlight ?? 2,
      holdMs: settleS * 1000,
      connectConcurrency: options.connectConcurrency ?? 200,
      // Longer than any connect-phase stall of a loaded box; devices never ping out mid-soak.
      clientOptions: { keepalive: 120, connectTimeout: 120_000 },
      sample,
      progressMs: 1000,
      onProgress: (p) => {
        const now = performance.now();
        if (connectedAt === 0) {
          connectedAt = now;
          cpuAtConnected = cpuSecondsOf(gw.pid);
          connectedMiB = rssMiBOf(gw.pid);
          void takeSample('connect');
          current = 'soak';
          phase(`${devices.length} devices connected in ${((now - t0) / 1000 - gatewayStartS).toFixed(1)} s; soak of ${durationS} s at ${totalRate.toFixed(0)} msg/s (${ratePerSecond} telemetry + ${heartbeatRate.toFixed(1)} heartbeats)`);
        }
        if (current === 'soak' && p.elapsedMs >= durationS * 1000) {
          void takeSample('soak');
          current = 'drain';
          soakEndAt = now;
        }
        if (current === 'drain' && p.inFlight === 0) {
          void takeSample('drain');
          current = 'settle';
        }
        progress.sent = p.sent;
        progress.acked = p.acked;
        progress.inFlight = p.inFlight;
      },
    });
    if (soakEndAt === 0) soakEndAt = performance.now();
    const cpuSoakPct = connectedAt > 0 ? ((cpuSecondsOf(gw.pid) - cpuAtConnected) / ((soakEndAt - connectedAt) / 1000)) * 100 : 0;
    clearInterval(sampler);
    sampler = undefined;
    current = 'closed';
    await takeSample();
    const connectS = connectedAt > 0 ? (connectedAt - t0) / 1000 - gatewayStartS : 0;
    phase(`soak over: ${summary.sent} sent, ${summary.acked} acked, ${summary.unacked} unacked; stopping the gateway`);
    const gatewayExit = await gw.child.stop(60_000);

    // ---- read back ----------------------------------------------------------------------------
    const dataDir = join(work, 'data');
    const ackedKeys = new Set<string>();
    const ackedAlarms = new Map<string, string>(); // device id → its alarm's key
    for (const e of summary.ledger.acked()) {
      const key = `${e.deviceId}@${e.ts}`;
      ackedKeys.add(key);
      if (alarmed.get(e.deviceId) === e.seq) ackedAlarms.set(e.deviceId, key);
    }
    let stored = 0;
    const readings = new Database(join(dataDir, 'gridedge.db'), { readonly: true, fileMustExist: true });
    try {
      for (const r of readings.prepare<[], { device_id: string; ts: number }>('SELECT device_id, ts FROM readings').iterate()) {
        stored++;
        ackedKeys.delete(`${r.device_id}@${r.ts}`);
      }
    } finally {
      readings.close();
    }
    const incidentsByDeviceRule = new Map<string, number>();
    const incidentsDb = new Database(join(dataDir, 'incidents.db'), { readonly: true, fileMustExist: true });
    try {
      for (const r of incidentsDb.prepare<[], { json: string }>('SELECT json FROM incidents').iterate()) {
        const inc = JSON.parse(r.json) as { ruleId: string; deviceIds: string[] };
        for (const id of inc.deviceIds) incidentsByDeviceRule.set(`${id}/${inc.ruleId}`, (incidentsByDeviceRule.get(`${id}/${inc.ruleId}`) ?? 0) + 1);
      }
    } finally {
      incidentsDb.close();
    }
    const ruleOf = new Map(devices.map((d) => [d.id, ALARM_OF[d.model.kind]?.rule ?? '']));
    const alarmMissing: string[] = [];
    const alarmDuplicated: string[] = [];
    for (const [id, key] of ackedAlarms) {
      const n = incidentsByDeviceRule.get(`${id}/${ruleOf.get(id) ?? ''}`) ?? 0;
      if (n === 0) alarmMissing.push(key);
      if (n > 1) alarmDuplicated.push(`${key} (${n} incidents)`);
    }
    const spurious = [...incidentsByDeviceRule.keys()].filter((k) => {
      const [id, rule] = k.split('/') as [string, string];
      return (rule === 'fire' || rule === 'sos') && !alarmed.has(id);
    });

    // ---- figures and bounds -------------------------------------------------------------------
    const soakSamples = samples.filter((s) => s.phase === 'soak');
    const soakStartS = connectedAt > 0 ? (connectedAt - t0) / 1000 : 0;
    const afterWarmup = soakSamples.filter((s) => s.atS - soakStartS >= warmupS);
    const third = Math.max(1, Math.floor(afterWarmup.length / 3));
    const lowest = (list: readonly SoakSample[]): number => (list.length > 0 ? Math.min(...list.map((s) => s.rssMiB)) : Number.NaN);
    const baselineMiB = lowest(afterWarmup.slice(0, third));
    const endMiB = lowest(afterWarmup.slice(-third));
    // Only samples with every device still connected (the last may catch them disconnecting).
    const settled = samples.filter((s) => s.phase === 'settle' && s.mqttClients === devices.length);
    const lastSettled = settled[settled.length - 1];
    const growthMiB = round1(endMiB - baselineMiB);
    const soakLag = soakSamples.filter((s) => s.lagMaxMs !== undefined);
    const connectSamples = samples.filter((s) => s.phase === 'connect');
    const lag = {
      p50MedianMs: round1(median(soakLag.map((s) => s.lagP50Ms ?? 0))),
      p99MedianMs: round1(median(soakLag.map((s) => s.lagP99Ms ?? 0))),
      p99MaxMs: Math.max(0, ...soakLag.map((s) => s.lagP99Ms ?? 0)),
      maxMs: Math.max(0, ...soakLag.map((s) => s.lagMaxMs ?? 0)),
      // A delay longer than all the time the main thread spent waiting for a CPU in that interval
      // was the gateway's own doing (busy or blocked in a syscall such as fsync).
      ownMaxMs: round1(Math.max(0, ...soakLag.map((s) => Math.max(0, (s.lagMaxMs ?? 0) - s.runQueueMs)))),
      scrapesAnswered: soakLag.length,
      scrapes: soakSamples.length,
      connectMaxMs: Math.max(0, ...connectSamples.map((s) => s.lagMaxMs ?? 0)),
      runQueueSoakPct: round1(median(soakSamples.map((s) => s.runQueuePct))),
      runQueueConnectPct: round1(median(connectSamples.map((s) => s.runQueuePct))),
    };
    const missingSample = [...ackedKeys].slice(0, 20);
    const checks: SoakCheck[] = [
      { name: 'every device connected', ok: summary.connections === devices.length && summary.connectFailures === 0, detail: `${summary.connections} of ${devices.length} (${summary.connectFailures} failed)` },
      { name: 'every PUBACKed reading stored', ok: ackedKeys.size === 0 && summary.acked > 0, detail: `${ackedKeys.size} of ${summary.acked} missing; ${stored} readings stored` },
      { name: 'no telemetry dropped', ok: droppedTelemetry === 0, detail: `${droppedTelemetry} dropped (gridedge_dropped_telemetry_total)` },
      {
        name: 'every PUBACKed alarm made one incident',
        ok: alarmMissing.length === 0 && alarmDuplicated.length === 0 && ackedAlarms.size > 0,
        detail: `${ackedAlarms.size - alarmMissing.length} of ${ackedAlarms.size} (${alarmed.size} sent); ${alarmDuplicated.length} duplicated`,
      },
      { name: 'no incident without an alarm', ok: spurious.length === 0, detail: `${spurious.length} fire/sos incidents of devices that sent no alarm` },
      {
        name: `RSS growth after warm-up ≤ ${bounds.rssGrowthMiB} MiB`,
        ok: afterWarmup.length >= 2 && growthMiB <= bounds.rssGrowthMiB,
        detail: `lowest ${baselineMiB.toFixed(1)} MiB in the first third after warm-up → lowest ${endMiB.toFixed(1)} MiB in the last third (${third} of ${afterWarmup.length} samples each); ${lastSettled?.rssMiB ?? '-'} MiB settled ${settleS} s after the load (heap ${lastSettled?.heapUsedMiB ?? '-'} MiB)`,
      },
      {
        name: `event loop never blocked ${bounds.eventLoopMaxMs} ms while soaking`,
        ok: soakLag.length > 0 && lag.ownMaxMs < bounds.eventLoopMaxMs,
        detail: `max ${lag.maxMs} ms, of which not explained by waiting for a CPU: ${lag.ownMaxMs} ms; ${soakLag.length} of ${soakSamples.length} scrapes of /metrics answered within 10 s (a missed one is covered by the next)`,
      },
      { name: 'gateway stopped cleanly', ok: gatewayExit === 0, detail: `exit code ${String(gatewayExit)}` },
    ];
    const { ledger: _ledger, ...load } = summary;
    return {
      options: { devices: devices.length, ratePerSecond, durationS, heartbeatS: options.heartbeatS ?? 'model', alarmsPerMinute, warmupS },
      samples,
      connectS: round1(connectS),
      gatewayStartS: round1(gatewayStartS),
      load,
      heartbeatsSent,
      telemetrySent,
      stored,
      missing: { count: ackedKeys.size, sample: missingSample },
      droppedTelemetry,
      alarms: { sent: alarmed.size, acked: ackedAlarms.size, withIncident: ackedAlarms.size - alarmMissing.length, missing: alarmMissing.slice(0, 20), duplicated: alarmDuplicated.slice(0, 20), spurious: spurious.slice(0, 20) },
      rss: { startMiB: round1(startMiB), connectedMiB: round1(connectedMiB), baselineMiB: round1(baselineMiB), endMiB: round1(endMiB), growthMiB,
        maxMiB: Math.max(0, ...samples.map((s) => s.rssMiB)),
        settledMiB: lastSettled?.rssMiB ?? Number.NaN,
        settledHeapMiB: lastSettled?.heapUsedMiB ?? Number.NaN,
      },
      lag,
      cpuSoakPct: round1(cpuSoakPct),
      checks,
      ok: checks.every((c) => c.ok),
      gatewayExit,
    };
  } finally {
    if (sampler) clearInterval(sampler);
    if (gateway && !gateway.child.exited()) await gateway.child.stop(5_000);
    if (ownWork) rmSync(work, { recursive: true, force: true });
  }
}

/** The samples as a fixed-width table, one line a sample. */
export function formatSamples(samples: readonly SoakSample[]): string[] {
  const head = ['t s', 'phase', 'RSS MiB', 'heap MiB', 'CPU %', 'runq %', 'lag p50', 'p99', 'max ms', 'clients', 'sent', 'acked', 'in flight'];
  const rows = samples.map((s) => [
    s.atS.toFixed(0),
    s.phase,
    s.rssMiB.toFixed(0),
    s.heapUsedMiB?.toFixed(0) ?? '-',
    s.cpuPct.toFixed(0),
    s.runQueuePct.toFixed(0),
    s.lagP50Ms?.toFixed(1) ?? '-',
    s.lagP99Ms?.toFixed(1) ?? '-',
    s.lagMaxMs?.toFixed(1) ?? '-',
    String(s.mqttClients ?? '-'),
    String(s.sent),
    String(s.acked),
    String(s.inFlight),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  return [head, ...rows].map((r) => r.map((c, i) => c.padStart(widths[i] ?? 0)).join('  '));
}

/** The result as `FIGURE name: value` lines (what the CI test prints and docs/RELIABILITY.md quotes). */
export function soakFigures(r: LoadSoakResult): string[] {
  const o = r.options;
  return [
    `FIGURE load-soak load: ${o.devices} devices, ${o.ratePerSecond} telemetry msg/s + heartbeats every ${o.heartbeatS === 'model' ? "model's cadence" : `${o.heartbeatS} s`} + ${o.alarmsPerMinute} alarms/min, ${o.durationS} s soak (warm-up ${o.warmupS} s)`,
    `FIGURE load-soak gateway start: ${r.gatewayStartS} s; connect ${o.devices} devices: ${r.connectS} s (${r.load.connectFailures} failed)`,
    `FIGURE load-soak sent: ${r.load.sent} (${r.telemetrySent} telemetry, ${r.heartbeatsSent} heartbeats, ${r.alarms.sent} alarms) at ${r.load.ratePerSecond} msg/s; acked ${r.load.acked}, unacked ${r.load.unacked}, throttled ${r.load.throttled}, errors ${r.load.errors}`,
    `FIGURE load-soak PUBACK latency ms: p50 ${r.load.latencyMs?.p50 ?? '-'}, p99 ${r.load.latencyMs?.p99 ?? '-'}, max ${r.load.latencyMs?.max ?? '-'}`,
    `FIGURE load-soak loss: ${r.missing.count} PUBACKed readings missing of ${r.load.acked} (${r.stored} stored); dropped telemetry ${r.droppedTelemetry}; alarms with an incident ${r.alarms.withIncident} of ${r.alarms.acked} acked, ${r.alarms.duplicated.length} duplicated, ${r.alarms.spurious.length} spurious`,
    `FIGURE load-soak RSS MiB: ${r.rss.startMiB} at start, ${r.rss.connectedMiB} connected, lowest ${r.rss.baselineMiB} in the first third after warm-up → lowest ${r.rss.endMiB} in the last third = growth ${r.rss.growthMiB} MiB; max ${r.rss.maxMiB}; settled after the load ${r.rss.settledMiB} (heap ${r.rss.settledHeapMiB})`,
    `FIGURE load-soak event-loop delay ms while soaking (${r.lag.scrapesAnswered} of ${r.lag.scrapes} samples): p50 median ${r.lag.p50MedianMs}, p99 median ${r.lag.p99MedianMs}, p99 max ${r.lag.p99MaxMs}, max ${r.lag.maxMs} (${r.lag.ownMaxMs} not explained by the run queue); while connecting: max ${r.lag.connectMaxMs}`,
    `FIGURE load-soak gateway main thread waiting for a CPU (run queue, median): ${r.lag.runQueueSoakPct} % of the time while soaking, ${r.lag.runQueueConnectPct} % while connecting`,
    `FIGURE load-soak gateway CPU during the soak: ${r.cpuSoakPct} % of one core`,
  ];
}
