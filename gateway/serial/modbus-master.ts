/**
 * The Modbus RTU master of one RS-485 bus (SPEC §4.1). RS-485 is half duplex: one transaction at
 * a time, each request at least `gapMs` after the end of the previous transaction. Every meter is
 * due every `pollIntervalMs`; the meter due earliest goes next, so a dead meter costs the others
 * at most one of its own polls (`(retries + 1) × timeoutMs`) before each of them has had its turn.
 *
 * Per meter: a poll is one FC03 of `model.poll`, retried up to `retries` times. Three failed polls
 * in a row give one `comm_fault` reading; the first answer after that gives `comm_restored` and
 * then the decoded reading, decoded against the restored state (devices/modbus/comm-status.ts).
 * A meter that keeps timing out after its `comm_fault` is polled at a doubling interval up to
 * 30 s (`maxBackoffMs`). While the bus is down every meter on it gets `comm_fault`, once.
 *
 * State held here is only what comm status needs (consecutive failures, whether `comm_fault` was
 * announced, when the next poll is due); a meter's last state flags come from the store through
 * `previousState`, so that events are derived against durable truth (SPEC §3.3).
 */
import type { Logger } from 'pino';
import type { DeviceRecord } from '../../devices/device-record.js';
import type { DeviceErrorCode, Result } from '../../devices/errors.js';
import { commFaultReading, commRestoredReading } from '../../devices/comm-status.js';
import {
  encodeRequest,
  parseReadResponse,
  parseWriteSingleResponse,
  readHoldingRequest,
  responseProgress,
  writeSingleRequest,
  type ModbusRequest,
  type WriteSingleRequest,
} from '../../devices/modbus/frames.js';
import { hasValidCrc } from '../../devices/modbus/crc.js';
import { COMM_FAULT } from '../../devices/modbus/meter-model.js';
import { findResponse } from '../../devices/modbus/resync.js';
import type { DeviceState, ModbusModel } from '../../devices/model.js';
import type { ReadingDraft } from '../../devices/reading.js';
import type { SerialBus, SerialClock } from './bus.js';

/** Why one transaction attempt was refused (SPEC §4.1 "rejected and counted by reason"). */
export const MODBUS_REJECT_REASONS = ['timeout', 'crc', 'slave_address', 'function', 'exception', 'byte_count', 'short_frame', 'decode'] as const;
export type ModbusRejectReason = (typeof MODBUS_REJECT_REASONS)[number];

/** The rejection counters, plus bytes skipped that belonged to no accepted frame. */
export type ModbusRejectCounts = Record<ModbusRejectReason | 'garbage_bytes', number>;

/** The part of a serial bus the master uses (a fake in unit tests). */
export type ModbusBus = Pick<SerialBus, 'id' | 'state' | 'write' | 'onData' | 'onUp' | 'onDown'>;

export interface ModbusMasterDeps {
  readonly bus: ModbusBus;
  /** The meters on this bus; each needs `address`. */
  readonly devices: readonly DeviceRecord[];
  /** The catalogue's Modbus model of a device; undefined skips the device (logged once). */
  modelFor(device: DeviceRecord): ModbusModel | undefined;
  /** The device's last stored state flags (the store keeps them). */
  previousState(deviceId: string): DeviceState | undefined;
  /** SPEC §4.1 defaults: 1 s, 300 ms, 2 retries, 5 ms. */
  readonly pollIntervalMs?: number;
  readonly timeoutMs?: number;
  readonly retries?: number;
  readonly gapMs?: number;
  /** Longest interval a meter that keeps timing out is backed off to. */
  readonly maxBackoffMs?: number;
  /** Failed polls in a row before `comm_fault` (SPEC §4.1: 3). */
  readonly faultAfter?: number;
  readonly clock: SerialClock;
  readonly logger: Logger;
  /**
   * A reading for the pipeline, in order (comm_restored before the reading decoded with it). A
   * returned promise is not awaited: polling never waits on the store; a rejection is logged.
   */
  onReading(draft: ReadingDraft, device: DeviceRecord): void | Promise<void>;
  /** One refused attempt, for counting and dead-lettering. `detail` is safe to log. */
  onReject?(reason: ModbusRejectReason, detail: string, device: DeviceRecord): void;
}

export interface ModbusDeviceStats {
  readonly deviceId: string;
  readonly address: number;
  readonly polls: number;
  readonly pollsOk: number;
  /** Failed polls in a row (0 after an answer). */
  readonly failures: number;
  readonly commFault: boolean;
  readonly lastPollAt: number | undefined;
  readonly lastOkAt: number | undefined;
  /** Time between the starts of the last two polls. */
  readonly lastIntervalMs: number | undefined;
  readonly nextPollAt: number;
}

export interface ModbusMasterStats {
  readonly bus: string;
  /** Request frames sent (attempts, polls and writes). */
  readonly transactions: number;
  readonly polls: number;
  readonly pollsOk: number;
  readonly pollsFailed: number;
  readonly writesOk: number;
  readonly writesFailed: number;
  readonly rejected: ModbusRejectCounts;
  readonly devices: readonly ModbusDeviceStats[];
}

export interface ModbusMaster {
  /** Subscribes to the bus and starts polling when it is open. The bus's own lifecycle is the caller's. */
  start(): void;
  /** Stops polling; queued set-point writes are rejected. */
  stop(): Promise<void>;
  /**
   * FC06 to one of this bus's meters, queued before the next poll and retried like a poll.
   * Resolves on the slave's echo; rejects with a ModbusWriteError otherwise (bus down, exception, timeout…).
   */
  writeSetpoint(device: DeviceRecord, address: number, value: number): Promise<void>;
  /** Replaces the device list (the registry changed); meters that stay keep their comm status and schedule. */
  setDevices(devices: readonly DeviceRecord[]): void;
  stats(): ModbusMasterStats;
}

export type ModbusWriteFailure = ModbusRejectReason | 'bus_down' | 'stopped' | 'unknown_device';

export class ModbusWriteError extends Error {
  readonly reason: ModbusWriteFailure;
  constructor(reason: ModbusWriteFailure, message: string) {
    super(message);
    this.name = 'ModbusWriteError';
    this.reason = reason;
  }
}

const REASON_OF_CODE: Partial<Record<DeviceErrorCode, ModbusRejectReason>> = {
  DEV_ERR_CRC: 'crc',
  DEV_ERR_SLAVE_ADDRESS: 'slave_address',
  DEV_ERR_FUNCTION: 'function',
  DEV_ERR_EXCEPTION: 'exception',
  DEV_ERR_BYTE_COUNT: 'byte_count',
  DEV_ERR_SHORT_FRAME: 'short_frame',
};

export function rejectReasonOf(code: DeviceErrorCode): ModbusRejectReason {
  return REASON_OF_CODE[code] ?? 'decode';
}

type Parse = (frame: Uint8Array) => Result<unknown>;

export interface RejectedVerdict {
  readonly kind: 'rejected';
  readonly reason: ModbusRejectReason;
  readonly detail: string;
  /** Bytes around the judged frame that belong to nothing. */
  readonly garbage: number;
}

/** What the bytes of one attempt came to. Pure, so that the resync rules are unit-tested on their own. */
export type AttemptVerdict =
  /** A valid response; `frame` is a copy; `garbage` bytes before and after it belong to nothing. */
  | { readonly kind: 'answer'; readonly frame: Buffer; readonly garbage: number }
  | RejectedVerdict
  /** Not decided yet: wait for more bytes (or the timeout). */
  | { readonly kind: 'pending' };

function rejected(result: Result<unknown>, fallback: ModbusRejectReason, fallbackDetail: string, garbage: number): RejectedVerdict {
  if (result.ok) return { kind: 'rejected', reason: fallback, detail: fallbackDetail, garbage };
  return { kind: 'rejected', reason: rejectReasonOf(result.error.code), detail: result.error.message, garbage };
}

/**
 * Judges the bytes received so far for `request`, as they arrive. A valid response anywhere is
 * taken (what precedes it is garbage: a late reply, turnaround noise). A complete frame at the
 * start that is from the polled slave but invalid (bad CRC, wrong function) is refused at once so
 * the retry need not wait for the timeout — unless a valid response may still be completing after it.
 */
export function judgeBytes(buf: Uint8Array, request: ModbusRequest, parse: Parse): AttemptVerdict {
  const search = findResponse(buf, request);
  if (search.found) {
    const garbage = buf.length - search.frame.length;
    const checked = parse(search.frame);
    if (search.exception || !checked.ok) return rejected(checked, 'exception', 'exception reply', garbage);
    return { kind: 'answer', frame: search.frame, garbage };
  }
  const candidateLater = search.skipped < buf.length && search.skipped > 0;
  if (buf[0] === request.slave && !candidateLater) {
    const progress = responseProgress(buf, request);
    if (progress.complete) {
      const frame = buf.subarray(0, progress.length);
      return rejected(parse(frame), 'crc', 'invalid response', buf.length - progress.length);
    }
  }
  return { kind: 'pending' };
}

/**
 * Why an attempt that got no valid response within the timeout failed: nothing arrived
 * (`timeout`); bytes that start with the polled address (what the parser says of them: short,
 * CRC, function, byte count); a whole valid frame of another slave (`slave_address`); the start
 * of our response after other bytes (`short_frame`, the bytes before it garbage); else noise, so
 * a `timeout` with the bytes counted as garbage.
 */
export function judgeTimeout(buf: Uint8Array, request: ModbusRequest, parse: Parse, timeoutMs: number): RejectedVerdict {
  const silence = `no response within ${timeoutMs} ms`;
  if (buf.length === 0) return { kind: 'rejected', reason: 'timeout', detail: silence, garbage: 0 };
  if (buf[0] === request.slave) {
    const progress = responseProgress(buf, request);
    const frame = progress.complete ? buf.subarray(0, progress.length) : buf;
    return rejected(parse(frame), 'short_frame', 'incomplete response', buf.length - frame.length);
  }
  if (buf.length >= 5 && hasValidCrc(buf)) return rejected(parse(buf), 'slave_address', 'frame from another slave', 0);
  const search = findResponse(buf, request);
  if (search.skipped < buf.length) {
    return rejected(parse(buf.subarray(search.skipped)), 'short_frame', 'incomplete response', search.skipped);
  }
  return { kind: 'rejected', reason: 'timeout', detail: `${silence} (${buf.length} noise bytes)`, garbage: buf.length };
}

interface Slot {
  device: DeviceRecord;
  readonly model: ModbusModel;
  readonly address: number;
  dueAt: number;
  failures: number;
  /** Undefined until first needed: then taken from the store (a fault announced before a restart). */
  commFault: boolean | undefined;
  polls: number;
  pollsOk: number;
  lastPollAt: number | undefined;
  lastOkAt: number | undefined;
  lastIntervalMs: number | undefined;
}

interface QueuedWrite {
  readonly slot: Slot;
  readonly request: WriteSingleRequest;
  resolve(): void;
  reject(err: ModbusWriteError): void;
}

type AttemptResult =
  | { readonly kind: 'answer'; readonly frame: Buffer; readonly at: number }
  | { readonly kind: 'rejected'; readonly reason: ModbusRejectReason; readonly detail: string; readonly timedOut: boolean }
  | { readonly kind: 'aborted'; readonly detail: string };

interface Transaction {
  readonly request: ModbusRequest;
  readonly parse: Parse;
  buf: Buffer;
  timer: unknown;
  settled: boolean;
  finish(result: AttemptResult): void;
}

export function createModbusMaster(deps: ModbusMasterDeps): ModbusMaster {
  const { bus, clock } = deps;
  const intervalMs = deps.pollIntervalMs ?? 1_000;
  const timeoutMs = deps.timeoutMs ?? 300;
  const retries = deps.retries ?? 2;
  const gapMs = deps.gapMs ?? 5;
  const maxBackoffMs = Math.max(deps.maxBackoffMs ?? 30_000, intervalMs);
  const faultAfter = deps.faultAfter ?? 3;
  const log = deps.logger.child({ module: 'modbus-master', bus: bus.id });

  const rejectedCounts: ModbusRejectCounts = {
    timeout: 0,
    crc: 0,
    slave_address: 0,
    function: 0,
    exception: 0,
    byte_count: 0,
    short_frame: 0,
    decode: 0,
    garbage_bytes: 0,
  };
  let transactions = 0;
  let polls = 0;
  let pollsOk = 0;
  let pollsFailed = 0;
  let writesOk = 0;
  let writesFailed = 0;

  let slots: Slot[] = [];
  const skippedLogged = new Set<string>();
  const writes: QueuedWrite[] = [];
  let running = false;
  let loop: Promise<void> | undefined;
  let active: Transaction | undefined;
  let lastEndAt = Number.NEGATIVE_INFINITY;
  let wake: (() => void) | undefined;
  const unsubscribe: (() => void)[] = [];

  function buildSlots(devices: readonly DeviceRecord[], keep: readonly Slot[]): Slot[] {
    const now = clock.now();
    const out: Slot[] = [];
    const taken = new Map<number, string>();
    for (const device of devices) {
      const model = deps.modelFor(device);
      const owner = device.address === undefined ? undefined : taken.get(device.address);
      if (owner !== undefined) {
        // The registry refuses this; if it ever slips through, two rooms must not share one meter's readings.
        log.error({ deviceId: device.id, address: device.address, owner }, 'two devices with one slave address on a bus: the second is not polled');
        continue;
      }
      if (model === undefined || device.address === undefined) {
        if (!skippedLogged.has(device.id)) {
          skippedLogged.add(device.id);
          log.warn({ deviceId: device.id, model: device.model }, model === undefined ? 'not a Modbus model: not polled' : 'no slave address: not polled');
        }
        continue;
      }
      taken.set(device.address, device.id);
      const old = keep.find((s) => s.device.id === device.id && s.address === device.address && s.model === model);
      if (old !== undefined) {
        old.device = device;
        out.push(old);
        continue;
      }
      out.push({
        device,
        model,
        address: device.address,
        dueAt: now,
        failures: 0,
        commFault: undefined,
        polls: 0,
        pollsOk: 0,
        lastPollAt: undefined,
        lastOkAt: undefined,
        lastIntervalMs: undefined,
      });
    }
    return out;
  }

  slots = buildSlots(deps.devices, []);

  function emit(draft: ReadingDraft, device: DeviceRecord): void {
    try {
      const result = deps.onReading(draft, device);
      if (result instanceof Promise) result.catch((err: unknown) => log.error({ err, deviceId: device.id }, 'onReading rejected'));
    } catch (err) {
      log.error({ err, deviceId: device.id }, 'onReading threw');
    }
  }

  function reject(reason: ModbusRejectReason, detail: string, device: DeviceRecord): void {
    rejectedCounts[reason]++;
    log.debug({ deviceId: device.id, reason, detail }, 'modbus attempt rejected');
    try {
      deps.onReject?.(reason, detail, device);
    } catch (err) {
      log.error({ err, deviceId: device.id }, 'onReject threw');
    }
  }

  function knownFault(slot: Slot): boolean {
    slot.commFault ??= deps.previousState(slot.device.id)?.[COMM_FAULT] === true;
    return slot.commFault;
  }

  function announceFault(slot: Slot, why: string): void {
    if (knownFault(slot)) return;
    slot.commFault = true;
    const { device, model } = slot;
    log.warn({ deviceId: device.id, address: slot.address, why }, 'meter comm_fault');
    emit(commFaultReading(model, { deviceId: device.id, receivedAt: clock.now(), previous: deps.previousState(device.id) }), device);
  }

  // ---- waiting -----------------------------------------------------------------------------

  function kick(): void {
    const w = wake;
    wake = undefined;
    w?.();
  }

  /** Sleeps `ms`; kick() does not cut it short (the inter-frame gap must hold). */
  function sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      clock.setTimeout(resolve, ms);
    });
  }

  /** Sleeps `ms` (forever when undefined) or until kick(). */
  function pause(ms: number | undefined): Promise<void> {
    return new Promise<void>((resolve) => {
      let timer: unknown;
      const done = (): void => {
        if (timer !== undefined) clock.clearTimeout(timer);
        if (wake === done) wake = undefined;
        resolve();
      };
      wake = done;
      if (ms !== undefined) timer = clock.setTimeout(done, Math.max(0, ms));
    });
  }

  // ---- one attempt -------------------------------------------------------------------------

  function onData(chunk: Buffer): void {
    const t = active;
    if (t === undefined || t.settled) {
      // Nothing asked for these: a late reply, or noise on the line.
      rejectedCounts.garbage_bytes += chunk.length;
      return;
    }
    t.buf = t.buf.length === 0 ? Buffer.from(chunk) : Buffer.concat([t.buf, chunk]);
    const verdict = judgeBytes(t.buf, t.request, t.parse);
    if (verdict.kind === 'pending') return;
    rejectedCounts.garbage_bytes += verdict.garbage;
    if (verdict.kind === 'answer') t.finish({ kind: 'answer', frame: verdict.frame, at: clock.now() });
    else t.finish({ kind: 'rejected', reason: verdict.reason, detail: verdict.detail, timedOut: false });
  }

  async function attemptOnce(request: ModbusRequest, parse: Parse): Promise<AttemptResult> {
    // Modbus over serial line §2.5.1.1 wants 3.5 characters of silence between frames; SPEC §4.1 ≥ gapMs.
    // At most gapMs: a wall clock stepped back (NTP) must not hold the bus for the step.
    const wait = Math.min(lastEndAt + gapMs - clock.now(), gapMs);
    if (wait > 0) await sleep(wait);
    if (!running) return { kind: 'aborted', detail: 'master stopped' };
    if (bus.state !== 'open') return { kind: 'aborted', detail: 'bus down' };
    const frame = encodeRequest(request);
    transactions++;
    return new Promise<AttemptResult>((resolve) => {
      const t: Transaction = {
        request,
        parse,
        buf: Buffer.alloc(0),
        timer: undefined,
        settled: false,
        finish(result) {
          if (t.settled) return;
          t.settled = true;
          if (t.timer !== undefined) clock.clearTimeout(t.timer);
          if (active === t) active = undefined;
          lastEndAt = clock.now();
          resolve(result);
        },
      };
      active = t;
      bus.write(frame).then(
        () => {
          // Serial line §2.4.1: the response timeout runs from the end of the request.
          if (!t.settled) {
            t.timer = clock.setTimeout(() => {
              const verdict = judgeTimeout(t.buf, request, parse, timeoutMs);
              rejectedCounts.garbage_bytes += verdict.garbage;
              t.finish({ kind: 'rejected', reason: verdict.reason, detail: verdict.detail, timedOut: true });
            }, timeoutMs);
          }
        },
        (err: unknown) => t.finish({ kind: 'aborted', detail: `write failed: ${err instanceof Error ? err.message : String(err)}` }),
      );
    });
  }

  type TransactResult =
    | { readonly kind: 'answer'; readonly frame: Buffer; readonly at: number }
    | { readonly kind: 'failed'; readonly reason: ModbusRejectReason; readonly detail: string; readonly timedOut: boolean }
    | { readonly kind: 'aborted'; readonly detail: string };

  /** One request with its retries. An exception reply is not retried: the slave meant it. */
  async function transact(request: ModbusRequest, parse: Parse, device: DeviceRecord): Promise<TransactResult> {
    let timedOut = false;
    let last: TransactResult = { kind: 'aborted', detail: 'no attempt' };
    for (let attempt = 0; attempt <= retries; attempt++) {
      const result = await attemptOnce(request, parse);
      if (result.kind !== 'rejected') return result;
      reject(result.reason, result.detail, device);
      timedOut ||= result.timedOut;
      last = { kind: 'failed', reason: result.reason, detail: result.detail, timedOut };
      if (result.reason === 'exception') break;
    }
    return last;
  }

  // ---- polls and writes --------------------------------------------------------------------

  function schedule(slot: Slot, startedAt: number, failedWithTimeout: boolean): void {
    const now = clock.now();
    if (failedWithTimeout && slot.failures >= faultAfter) {
      // A dead meter: poll it less and less often, so that it costs the others little (SPEC §4.1).
      const backoff = Math.min(intervalMs * 2 ** (slot.failures - faultAfter + 1), maxBackoffMs);
      slot.dueAt = startedAt + backoff;
      return;
    }
    // Drift-free while the bus keeps up; never a burst of catch-up polls when it did not.
    slot.dueAt = Math.max(slot.dueAt + intervalMs, now);
  }

  async function poll(slot: Slot): Promise<void> {
    const { device, model } = slot;
    const request = readHoldingRequest(slot.address, model.poll.start, model.poll.count);
    const startedAt = clock.now();
    if (slot.lastPollAt !== undefined) slot.lastIntervalMs = startedAt - slot.lastPollAt;
    slot.lastPollAt = startedAt;
    const parse: Parse = (frame) => parseReadResponse(frame, request);
    const result = await transact(request, parse, device);
    if (result.kind === 'aborted') return; // the bus went down or we stopped: not the meter's fault
    polls++;
    slot.polls++;
    if (result.kind === 'answer') {
      const at = result.at;
      const stored = deps.previousState(device.id);
      const restored = knownFault(slot) ? commRestoredReading(model, { deviceId: device.id, receivedAt: at, previous: stored }) : undefined;
      const decoded = model.decode(result.frame, { deviceId: device.id, receivedAt: at, previous: restored?.state ?? stored, address: slot.address });
      if (decoded.ok) {
        pollsOk++;
        slot.pollsOk++;
        slot.failures = 0;
        slot.lastOkAt = at;
        if (restored !== undefined) {
          slot.commFault = false;
          log.info({ deviceId: device.id, address: slot.address }, 'meter comm_restored');
          emit(restored, device);
        }
        emit(decoded.value, device);
        schedule(slot, startedAt, false);
        return;
      }
      reject(rejectReasonOf(decoded.error.code), decoded.error.message, device);
      failPoll(slot, startedAt, false);
      return;
    }
    failPoll(slot, startedAt, result.timedOut);
  }

  function failPoll(slot: Slot, startedAt: number, timedOut: boolean): void {
    pollsFailed++;
    slot.failures++;
    if (slot.failures >= faultAfter) announceFault(slot, `${slot.failures} failed polls`);
    schedule(slot, startedAt, timedOut);
  }

  async function write(job: QueuedWrite): Promise<void> {
    const { request } = job;
    const parse: Parse = (frame) => parseWriteSingleResponse(frame, request);
    const result = await transact(request, parse, job.slot.device);
    if (result.kind === 'answer') {
      writesOk++;
      log.info({ deviceId: job.slot.device.id, register: request.address, value: request.value }, 'set-point written');
      job.resolve();
      return;
    }
    writesFailed++;
    if (result.kind === 'aborted') job.reject(new ModbusWriteError(running ? 'bus_down' : 'stopped', `set-point write aborted: ${result.detail}`));
    else job.reject(new ModbusWriteError(result.reason, `set-point write failed: ${result.detail}`));
  }

  function nextDue(): Slot | undefined {
    let best: Slot | undefined;
    for (const s of slots) if (best === undefined || s.dueAt < best.dueAt) best = s;
    return best;
  }

  async function run(): Promise<void> {
    while (running) {
      if (bus.state !== 'open') {
        await pause(undefined);
        continue;
      }
      const job = writes.shift();
      if (job !== undefined) {
        await write(job);
        continue;
      }
      const now = clock.now();
      // Nothing is legitimately due later than the longest backoff: a later time means the wall
      // clock was stepped back (docs/SPEC-NOTES.md "Clock steps"); poll on from now.
      for (const s of slots) if (s.dueAt > now + maxBackoffMs) s.dueAt = now + intervalMs;
      const slot = nextDue();
      if (slot === undefined || slot.dueAt > now) {
        await pause(slot === undefined ? undefined : slot.dueAt - now);
        continue;
      }
      await poll(slot);
    }
  }

  function rejectQueued(reason: 'bus_down' | 'stopped', detail: string): void {
    for (const job of writes.splice(0)) {
      writesFailed++;
      job.reject(new ModbusWriteError(reason, detail));
    }
  }

  function onDown(reason: string): void {
    active?.finish({ kind: 'aborted', detail: `bus down: ${reason}` });
    rejectQueued('bus_down', `bus ${bus.id} is down: ${reason}`);
    // SPEC §4: while a bus is down its devices get comm_fault.
    for (const slot of slots) announceFault(slot, `bus down: ${reason}`);
    kick();
  }

  function onUp(): void {
    // The outage was the bus's, not the meters': poll them all now, without their backoff.
    const now = clock.now();
    for (const slot of slots) {
      slot.failures = 0;
      slot.dueAt = now;
    }
    kick();
  }

  return {
    start() {
      if (running) return;
      running = true;
      unsubscribe.push(
        bus.onData((chunk) => onData(chunk)),
        bus.onUp(onUp),
        bus.onDown(onDown),
      );
      // A bus already known to be down said so before we listened.
      if (bus.state === 'reopening') onDown('bus down at start');
      loop = run().catch((err: unknown) => {
        // A bug, not wire input: log loudly and stop rather than spin.
        log.fatal({ err }, 'modbus master loop crashed');
        running = false;
      });
    },
    async stop() {
      if (!running) return;
      running = false;
      for (const off of unsubscribe.splice(0)) off();
      active?.finish({ kind: 'aborted', detail: 'master stopped' });
      rejectQueued('stopped', 'modbus master stopped');
      kick();
      await loop;
    },
    writeSetpoint(device, address, value) {
      const slot = slots.find((s) => s.device.id === device.id);
      if (slot === undefined) return Promise.reject(new ModbusWriteError('unknown_device', `${device.id} is not polled on bus ${bus.id}`));
      let request: WriteSingleRequest;
      try {
        request = writeSingleRequest(slot.address, address, value);
      } catch (err) {
        return Promise.reject(err instanceof Error ? err : new Error(String(err)));
      }
      if (!running) return Promise.reject(new ModbusWriteError('stopped', 'modbus master is not running'));
      if (bus.state !== 'open') return Promise.reject(new ModbusWriteError('bus_down', `bus ${bus.id} is ${bus.state}`));
      return new Promise<void>((resolve, rejectWrite) => {
        writes.push({ slot, request, resolve, reject: rejectWrite });
        kick();
      });
    },
    setDevices(devices) {
      slots = buildSlots(devices, slots);
      kick();
    },
    stats() {
      return {
        bus: bus.id,
        transactions,
        polls,
        pollsOk,
        pollsFailed,
        writesOk,
        writesFailed,
        rejected: { ...rejectedCounts },
        devices: slots.map((s) => ({
          deviceId: s.device.id,
          address: s.address,
          polls: s.polls,
          pollsOk: s.pollsOk,
          failures: s.failures,
          commFault: s.commFault ?? false,
          lastPollAt: s.lastPollAt,
          lastOkAt: s.lastOkAt,
          lastIntervalMs: s.lastIntervalMs,
          nextPollAt: s.dueAt,
        })),
      };
    },
  };
}
