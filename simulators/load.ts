import { performance } from 'node:perf_hooks';
import type { IClientOptions } from 'mqtt';
import type { EncodeSample, MqttModel } from '../devices/model.js';
import { createMqttDevice, type MqttDevice, type Qos } from './mqtt-device.js';

/*
 * The load generator shared by tests, benchmarks and `gridedge simulate --rate`. Each connection
 * is one device speaking for itself (the gateway's ACL lets a device publish only on its own
 * dev/{id}/up, SPEC §3), so `connections` caps how many of the given devices take part. The rate
 * is open-loop: messages are issued on a schedule (R per second in all, spread round-robin over
 * the connections), whatever the PUBACKs do, so a slow gateway shows as latency and in-flight
 * messages rather than as a quietly lower rate. Bounded twice: by time (`durationMs`) and by
 * count (`maxMessages`, default rate × duration), and in-flight QoS 1 messages per connection are
 * capped (`maxInFlight`; messages over it are counted as `throttled`, not sent).
 *
 * Every QoS 1 message goes into a ledger keyed by (device id, payload ts): the ts is unique per
 * device, and it is what the gateway stores (SPEC §2: the device's time, when within ±24 h), so a
 * test can check that every acknowledged reading is in the store.
 */

export interface LoadDevice {
  readonly id: string;
  readonly secret: string;
  readonly model: MqttModel;
}

/** Share of each MQTT model id among the connections, e.g. `{ 'smoke-json': 0.6, 'pager-json': 0.4 }`. */
export type ModelMix = Readonly<Record<string, number>>;

export interface LedgerEntry {
  readonly deviceId: string;
  readonly model: string;
  /** Per-device sequence number, from 0. */
  readonly seq: number;
  /** The payload's device time: unique per device, the key of the stored reading. */
  readonly ts: number;
  readonly acked: boolean;
  /** Publish to PUBACK, ms (acked entries). */
  readonly latencyMs?: number;
}

export interface LoadLedger {
  /** Every QoS 1 message, in the order it was issued. */
  entries(): LedgerEntry[];
  acked(): LedgerEntry[];
  unacked(): LedgerEntry[];
  /** `deviceId@ts` of every acknowledged message. */
  ackedKeys(): Set<string>;
}

export interface LoadProgress {
  readonly elapsedMs: number;
  readonly sent: number;
  readonly acked: number;
  readonly inFlight: number;
  readonly errors: number;
}

export interface LoadOptions {
  /** Only ever this broker (tests and benches give 127.0.0.1). */
  readonly url: string;
  readonly devices: readonly LoadDevice[];
  /** How many devices connect, one client each; default all of them. */
  readonly connections?: number;
  /** Messages per second, over all connections. */
  readonly ratePerSecond: number;
  readonly durationMs: number;
  readonly qos: Qos;
  readonly mix?: ModelMix;
  /** Count bound; default round(rate × duration). */
  readonly maxMessages?: number;
  /** Per connection; default 1000. */
  readonly maxInFlight?: number;
  /** How long to wait for outstanding PUBACKs after the last message; default 10 s. */
  readonly drainMs?: number;
  /** How long the connections stay open, idle, after the drain (a soak samples the settled gateway); default 0. */
  readonly holdMs?: number;
  /** Connections opened at once while setting up; default 50. */
  readonly connectConcurrency?: number;
  /** What each message says; default a heartbeat with plausible battery and signal levels. */
  readonly sample?: (device: LoadDevice, seq: number) => EncodeSample;
  readonly clientOptions?: Partial<IClientOptions>;
  readonly onAck?: (entry: LedgerEntry) => void;
  /** At most every `progressMs` (default 250) while sending and draining. */
  readonly onProgress?: (progress: LoadProgress) => void;
  readonly progressMs?: number;
  /** Stops sending early; outstanding PUBACKs are still awaited. */
  readonly signal?: AbortSignal;
}

export interface LatencySummary {
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
}

export interface LoadSummary {
  readonly url: string;
  readonly qos: Qos;
  /** Devices that connected and took part. */
  readonly connections: number;
  /** Devices that could not connect. */
  readonly connectFailures: number;
  readonly sent: number;
  /** QoS 1 messages PUBACKed (for QoS 0: 0). */
  readonly acked: number;
  /** QoS 1 messages without a PUBACK when the run ended. */
  readonly unacked: number;
  readonly errors: number;
  /** Not sent because the connection had `maxInFlight` unacknowledged messages. */
  readonly throttled: number;
  /** Length of the sending phase. */
  readonly durationMs: number;
  readonly targetRatePerSecond: number;
  /** sent / sending phase. */
  readonly ratePerSecond: number;
  /** PUBACK latency, ms; undefined for QoS 0 or when nothing was acked. */
  readonly latencyMs?: LatencySummary;
  readonly sentByModel: Readonly<Record<string, number>>;
  /** The first few distinct error messages. */
  readonly errorSamples: readonly string[];
  readonly aborted: boolean;
  readonly ledger: LoadLedger;
}

/** Default message: a heartbeat, levels varying a little but never across the battery threshold. */
export function heartbeatSample(_device: LoadDevice, seq: number): EncodeSample {
  return { events: ['heartbeat'], metrics: { battery_pct: 80 + (seq % 20), rssi_dbm: -60 - (seq % 30) } };
}

/**
 * `count` devices in the proportions of `mix` (largest remainder), in the order given within
 * each model; models short of devices leave their share to the others. Without a mix: the first
 * `count`.
 */
export function selectByMix<T extends { readonly model: { readonly id: string } }>(devices: readonly T[], count: number, mix?: ModelMix): T[] {
  const n = Math.max(0, Math.min(count, devices.length));
  if (!mix) return devices.slice(0, n);
  const byModel = new Map<string, T[]>();
  for (const d of devices) {
    const list = byModel.get(d.model.id) ?? [];
    list.push(d);
    byModel.set(d.model.id, list);
  }
  const shares = Object.entries(mix).filter(([id, share]) => share > 0 && byModel.has(id));
  const total = shares.reduce((sum, [, share]) => sum + share, 0);
  if (total <= 0) return devices.slice(0, n);
  const quota = shares.map(([id, share]) => ({ id, exact: (n * share) / total, take: Math.floor((n * share) / total) }));
  let left = n - quota.reduce((sum, q) => sum + q.take, 0);
  for (const q of [...quota].sort((a, b) => b.exact - b.take - (a.exact - a.take))) {
    if (left === 0) break;
    q.take++;
    left--;
  }
  const chosen: T[] = [];
  let missing = 0;
  for (const q of quota) {
    const pool = byModel.get(q.id) ?? [];
    chosen.push(...pool.slice(0, q.take));
    missing += Math.max(0, q.take - pool.length);
  }
  // Fill from the mix's models first, then from any.
  const mixIds = new Set(quota.map((q) => q.id));
  for (const d of [...devices.filter((x) => mixIds.has(x.model.id)), ...devices.filter((x) => !mixIds.has(x.model.id))]) {
    if (missing === 0) break;
    if (chosen.includes(d)) continue;
    chosen.push(d);
    missing--;
  }
  return chosen;
}

/** Nearest-rank percentile of sorted values. */
function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return 0;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank] ?? 0;
}

function round3(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

interface Lane {
  readonly spec: LoadDevice;
  readonly device: MqttDevice;
  seq: number;
  lastTs: number;
  inFlight: number;
}

export async function runLoad(options: LoadOptions): Promise<LoadSummary> {
  const { url, qos, durationMs, ratePerSecond } = options;
  if (!(ratePerSecond > 0) || !Number.isFinite(ratePerSecond)) throw new RangeError('ratePerSecond must be a positive number');
  if (!(durationMs > 0) || !Number.isFinite(durationMs)) throw new RangeError('durationMs must be a positive number');
  const maxMessages = options.maxMessages ?? Math.round((ratePerSecond * durationMs) / 1000);
  const maxInFlight = options.maxInFlight ?? 1000;
  const drainMs = options.drainMs ?? 10_000;
  const concurrency = Math.max(1, options.connectConcurrency ?? 50);
  const progressMs = options.progressMs ?? 250;
  const sampleOf = options.sample ?? heartbeatSample;
  const chosen = selectByMix(options.devices, options.connections ?? options.devices.length, options.mix);
  if (chosen.length === 0) throw new RangeError('runLoad needs at least one device');

  let errors = 0;
  const errorSamples: string[] = [];
  const noteError = (err: unknown): void => {
    errors++;
    const text = err instanceof Error ? err.message : String(err);
    if (errorSamples.length < 5 && !errorSamples.includes(text)) errorSamples.push(text);
  };

  // ---- connect -------------------------------------------------------------------------------
  const lanes: Lane[] = [];
  let connectFailures = 0;
  for (let i = 0; i < chosen.length; i += concurrency) {
    if (options.signal?.aborted) break;
    const batch = chosen.slice(i, i + concurrency);
    const results = await Promise.allSettled(
      batch.map(async (spec) => {
        const device = createMqttDevice({
          url,
          deviceId: spec.id,
          secret: spec.secret,
          model: spec.model,
          heartbeatMs: 0,
          respond: false,
          ...(options.clientOptions ? { clientOptions: options.clientOptions } : {}),
          // Unanswered messages are reported as unacked at the end, not as errors.
          ackTimeoutMs: 2 ** 31 - 1,
        });
        await device.start();
        return device;
      }),
    );
    results.forEach((r, j) => {
      const spec = batch[j] as LoadDevice;
      if (r.status === 'fulfilled') lanes.push({ spec, device: r.value, seq: 0, lastTs: 0, inFlight: 0 });
      else {
        connectFailures++;
        noteError(r.reason);
      }
    });
  }
  if (lanes.length === 0) {
    throw new Error(`no device could connect to ${url}${errorSamples[0] ? `: ${errorSamples[0]}` : ''}`);
  }

  // ---- ledger --------------------------------------------------------------------------------
  const led = {
    lane: [] as number[],
    seq: [] as number[],
    ts: [] as number[],
    acked: [] as boolean[],
    latency: [] as number[],
  };
  const entryAt = (i: number): LedgerEntry => {
    const lane = lanes[led.lane[i] as number] as Lane;
    const acked = led.acked[i] === true;
    return {
      deviceId: lane.spec.id,
      model: lane.spec.model.id,
      seq: led.seq[i] as number,
      ts: led.ts[i] as number,
      acked,
      ...(acked ? { latencyMs: led.latency[i] ?? 0 } : {}),
    };
  };
  const ledger: LoadLedger = {
    entries: () => led.seq.map((_, i) => entryAt(i)),
    acked: () => led.seq.flatMap((_, i) => (led.acked[i] ? [entryAt(i)] : [])),
    unacked: () => led.seq.flatMap((_, i) => (led.acked[i] ? [] : [entryAt(i)])),
    ackedKeys: () => new Set(ledger.acked().map((e) => `${e.deviceId}@${e.ts}`)),
  };

  // ---- send ----------------------------------------------------------------------------------
  let sent = 0;
  let acked = 0;
  let inFlight = 0;
  let throttled = 0;
  let issued = 0;
  const sentByModel: Record<string, number> = {};
  const latencies = new Float64Array(qos === 1 ? maxMessages : 0);
  let latencyCount = 0;
  let next = 0;
  let closing = false;

  function issue(): void {
    const laneIndex = next;
    const lane = lanes[laneIndex] as Lane;
    next = (next + 1) % lanes.length;
    issued++;
    if (qos === 1 && lane.inFlight >= maxInFlight) {
      throttled++;
      return;
    }
    const seq = lane.seq++;
    // Unique per device even within one millisecond: the ts is the stored reading's key.
    const ts = Math.max(Date.now(), lane.lastTs + 1);
    lane.lastTs = ts;
    const payload = lane.spec.model.encode({ ...sampleOf(lane.spec, seq), ts });
    sent++;
    sentByModel[lane.spec.model.id] = (sentByModel[lane.spec.model.id] ?? 0) + 1;
    if (qos === 0) {
      lane.device.publishRaw(payload, { qos: 0 }).catch(noteError);
      return;
    }
    const row = led.seq.length;
    led.lane.push(laneIndex);
    led.seq.push(seq);
    led.ts.push(ts);
    led.acked.push(false);
    led.latency.push(0);
    lane.inFlight++;
    inFlight++;
    const t0 = performance.now();
    lane.device.publishRaw(payload, { qos: 1 }).then(
      () => {
        const latency = performance.now() - t0;
        lane.inFlight--;
        inFlight--;
        acked++;
        led.acked[row] = true;
        led.latency[row] = latency;
        if (latencyCount < latencies.length) latencies[latencyCount++] = latency;
        if (options.onAck) {
          try {
            options.onAck(entryAt(row));
          } catch (err) {
            noteError(err);
          }
        }
      },
      (err: unknown) => {
        lane.inFlight--;
        inFlight--;
        // After the drain the rest are reported as unacked, not again as errors.
        if (!closing) noteError(err);
      },
    );
  }

  const started = performance.now();
  let lastProgress = 0;
  const progress = (force = false): void => {
    if (!options.onProgress) return;
    const now = performance.now();
    if (!force && now - lastProgress < progressMs) return;
    lastProgress = now;
    options.onProgress({ elapsedMs: Math.round(now - started), sent, acked, inFlight, errors });
  };

  const aborted = await new Promise<boolean>((resolve) => {
    const onAbort = (): void => finish(true);
    let timer: ReturnType<typeof setTimeout> | undefined;
    let done = false;
    function finish(wasAborted: boolean): void {
      if (done) return;
      done = true;
      if (timer) clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
      resolve(wasAborted);
    }
    function tick(): void {
      const elapsed = performance.now() - started;
      const due = Math.min(maxMessages, Math.floor((Math.min(elapsed, durationMs) * ratePerSecond) / 1000));
      while (issued < due) issue();
      progress();
      if (elapsed >= durationMs || issued >= maxMessages) finish(false);
      // 1 ms ticks: Node's timer floor; the due count keeps the rate right whatever the jitter.
      else timer = setTimeout(tick, 1);
    }
    if (options.signal?.aborted) finish(true);
    else {
      options.signal?.addEventListener('abort', onAbort, { once: true });
      tick();
    }
  });
  const sendingMs = performance.now() - started;

  // ---- drain ---------------------------------------------------------------------------------
  const drainUntil = performance.now() + drainMs;
  while (inFlight > 0 && performance.now() < drainUntil) {
    await new Promise((r) => setTimeout(r, 5));
    progress();
  }
  progress(true);
  const unacked = qos === 1 ? led.seq.length - acked : 0;
  if ((options.holdMs ?? 0) > 0) await new Promise((r) => setTimeout(r, options.holdMs));

  closing = true;
  // A connection still waiting for PUBACKs is treated as a dead link: closed at once.
  await Promise.allSettled(lanes.map((l) => l.device.stop({ abrupt: l.inFlight > 0 })));

  const sorted = latencies.slice(0, latencyCount).sort();
  const latencyMs = qos === 1 && latencyCount > 0 ? { p50: round3(percentile(sorted, 50)), p99: round3(percentile(sorted, 99)), max: round3(sorted[sorted.length - 1] ?? 0) } : undefined;

  return {
    url,
    qos,
    connections: lanes.length,
    connectFailures,
    sent,
    acked,
    unacked,
    errors,
    throttled,
    durationMs: Math.round(sendingMs),
    targetRatePerSecond: ratePerSecond,
    ratePerSecond: Math.round((sent / Math.max(sendingMs, 1)) * 1000 * 10) / 10,
    ...(latencyMs ? { latencyMs } : {}),
    sentByModel,
    errorSamples,
    aborted,
    ledger,
  };
}

/** The summary as label/value rows for the summary printer (progress.ts). */
export function loadSummaryRows(s: LoadSummary): [string, string][] {
  const rows: [string, string][] = [
    ['broker', s.url],
    ['connections', `${s.connections}${s.connectFailures > 0 ? ` (${s.connectFailures} could not connect)` : ''}`],
    ['qos', String(s.qos)],
    ['duration', `${(s.durationMs / 1000).toFixed(1)} s`],
    ['sent', `${s.sent} (${Object.entries(s.sentByModel).map(([m, n]) => `${m} ${n}`).join(', ')})`],
    ['rate', `${s.ratePerSecond} msg/s (target ${s.targetRatePerSecond})`],
  ];
  if (s.qos === 1) {
    rows.push(['acked', `${s.acked}${s.unacked > 0 ? ` (${s.unacked} without PUBACK)` : ''}`]);
    if (s.latencyMs) rows.push(['PUBACK latency', `p50 ${s.latencyMs.p50} ms, p99 ${s.latencyMs.p99} ms, max ${s.latencyMs.max} ms`]);
  }
  if (s.throttled > 0) rows.push(['throttled', `${s.throttled} (in-flight cap reached)`]);
  rows.push(['errors', `${s.errors}${s.errorSamples.length > 0 ? ` (${s.errorSamples.join('; ')})` : ''}`]);
  if (s.aborted) rows.push(['stopped', 'early (interrupted)']);
  return rows;
}
