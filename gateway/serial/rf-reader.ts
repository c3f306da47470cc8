/**
 * The reader of one `rf-bridge` bus (SPEC §4.3): bytes → frames → EV1527 words → presses (the
 * pure receiver in devices/rf/) → the registered pager → a reading. The bus only listens; the
 * press detector's windows run on the injected clock, and `expire()` runs about once a second so
 * that a lone SOS word is counted even when the radio then stays quiet.
 *
 * An id nobody registered raises nothing (SPEC §4.3): it is listed for enrolment, bounded, with
 * the least recently heard forgotten first.
 */
import type { Logger } from 'pino';
import type { DeviceRecord } from '../../devices/device-record.js';
import type { DeviceState, RfModel, RfPress } from '../../devices/model.js';
import type { ReadingDraft } from '../../devices/reading.js';
import { COMM_FAULT, commFaultReading, commRestoredReading } from '../../devices/comm-status.js';
import { createRfReceiver } from '../../devices/rf/receiver.js';
import type { SerialBus, SerialClock } from './bus.js';

export type RfRejectReason = 'unknown_key' | 'decode';

/** The part of a serial bus the reader uses. */
export type RfBus = Pick<SerialBus, 'id' | 'onData' | 'onUp' | 'onDown'>;

export interface RfReaderDeps {
  readonly bus: RfBus;
  /** The registered pager with this 20-bit id (5 upper-case hex digits), or undefined. */
  resolve(rfId: string): DeviceRecord | undefined;
  /** The pagers registered on this bus: they get `comm_fault` while it is down (SPEC §4). */
  devices(): readonly DeviceRecord[];
  /** The `pager-rf` model. */
  readonly model: RfModel;
  previousState(deviceId: string): DeviceState | undefined;
  readonly clock: SerialClock;
  readonly logger: Logger;
  /** A reading for the pipeline. A returned promise is not awaited; a rejection is logged. */
  onReading(draft: ReadingDraft, device: DeviceRecord): void | Promise<void>;
  /** A press of a registered pager that did not decode (an unknown key). */
  onReject?(reason: RfRejectReason, detail: string, device: DeviceRecord): void;
  /** Most unregistered ids remembered (default 256). */
  readonly maxUnregistered?: number;
  /** How often the press detector expires old words (default 1 s). */
  readonly expireIntervalMs?: number;
  /** SPEC §4.3: 1.5 s. */
  readonly pressWindowMs?: number;
}

export interface UnregisteredRfId {
  /** 20-bit EV1527 id, 5 upper-case hex digits: what goes into the registry's `rf` column. */
  readonly id: string;
  readonly firstSeen: number;
  readonly lastSeen: number;
  /** Presses heard (after repeat folding). */
  readonly presses: number;
  /** Key of the last press, to tell the installer which button was pressed. */
  readonly lastKey: number;
}

export interface RfReaderStats {
  readonly bus: string;
  /** Whole frames parsed. */
  readonly frames: number;
  /** Bytes that could not start a frame. */
  readonly skippedBytes: number;
  /** `AA A4` candidates without their `55` tail. */
  readonly rejectedCandidates: number;
  readonly words: number;
  /** Presses after folding (registered or not). */
  readonly presses: number;
  /** SOS words that stayed alone for a whole window: not raised (SPEC §4.3). */
  readonly straySos: number;
  /** Codes the press detector dropped under a flood. */
  readonly evicted: number;
  /** Readings handed to the pipeline. */
  readonly readings: number;
  /** Presses of registered pagers with a key the model does not know. */
  readonly unknownKeys: number;
  /** Presses of registered pagers that failed to decode for another reason. */
  readonly decodeErrors: number;
  /** Presses from ids nobody registered. */
  readonly unregisteredPresses: number;
  /** Distinct unregistered ids currently listed. */
  readonly unregisteredIds: number;
}

export interface RfReader {
  start(): void;
  stop(): void;
  /** Ids heard but not registered, most recently heard first. */
  unregistered(): UnregisteredRfId[];
  stats(): RfReaderStats;
}

interface Unregistered {
  readonly id: string;
  readonly firstSeen: number;
  lastSeen: number;
  presses: number;
  lastKey: number;
}

export function createRfReader(deps: RfReaderDeps): RfReader {
  const { bus, clock, model } = deps;
  const maxUnregistered = deps.maxUnregistered ?? 256;
  const expireMs = deps.expireIntervalMs ?? 1_000;
  const log = deps.logger.child({ module: 'rf-reader', bus: bus.id });
  const receiver = createRfReceiver(deps.pressWindowMs === undefined ? {} : { windowMs: deps.pressWindowMs });
  // Insertion order = order of last press (delete and re-insert), so the first key is the stalest.
  const strangers = new Map<string, Unregistered>();
  let readings = 0;
  let unknownKeys = 0;
  let decodeErrors = 0;
  let unregisteredPresses = 0;
  let running = false;
  let timer: unknown;
  const unsubscribe: (() => void)[] = [];

  function remember(press: RfPress): void {
    unregisteredPresses++;
    const known = strangers.get(press.id);
    if (known !== undefined) {
      strangers.delete(press.id);
      known.lastSeen = press.at;
      known.presses++;
      known.lastKey = press.key;
      strangers.set(press.id, known);
      return;
    }
    log.info({ rfId: press.id, key: press.key }, 'press from an unregistered rf id (listed for enrolment)');
    strangers.set(press.id, { id: press.id, firstSeen: press.at, lastSeen: press.at, presses: 1, lastKey: press.key });
    while (strangers.size > maxUnregistered) {
      const oldest = strangers.keys().next();
      if (oldest.done === true) break;
      strangers.delete(oldest.value);
    }
  }

  function handle(press: RfPress): void {
    const device = deps.resolve(press.id);
    if (device === undefined) {
      remember(press);
      return;
    }
    // The reading is as of the press's first word (that is when the resident pressed).
    const decoded = model.decode(press, { deviceId: device.id, receivedAt: press.at, previous: deps.previousState(device.id) });
    if (!decoded.ok) {
      const reason: RfRejectReason = decoded.error.code === 'DEV_ERR_UNKNOWN_CODE' ? 'unknown_key' : 'decode';
      if (reason === 'unknown_key') unknownKeys++;
      else decodeErrors++;
      log.debug({ deviceId: device.id, key: press.key, reason }, 'rf press rejected');
      try {
        deps.onReject?.(reason, decoded.error.message, device);
      } catch (err) {
        log.error({ err, deviceId: device.id }, 'onReject threw');
      }
      return;
    }
    emit(decoded.value, device);
  }

  function emit(draft: ReadingDraft, device: DeviceRecord): void {
    readings++;
    try {
      const result = deps.onReading(draft, device);
      if (result instanceof Promise) result.catch((err: unknown) => log.error({ err, deviceId: device.id }, 'onReading rejected'));
    } catch (err) {
      log.error({ err, deviceId: device.id }, 'onReading threw');
    }
  }

  /**
   * SPEC §4: while the bus is down its devices get comm_fault — for a pager, nobody can hear its
   * SOS, which the rules make an incident (device.rf_unheard). Said once per outage per pager (the
   * stored state remembers it across restarts); comm_restored when the bus is back.
   */
  function announceComm(fault: boolean): void {
    const receivedAt = clock.now();
    for (const device of deps.devices()) {
      const previous = deps.previousState(device.id);
      if ((previous?.[COMM_FAULT] === true) === fault) continue;
      const ctx = { deviceId: device.id, receivedAt, previous };
      emit(fault ? commFaultReading(model, ctx) : commRestoredReading(model, ctx), device);
    }
  }

  function onData(chunk: Buffer, at: number): void {
    for (const press of receiver.push(chunk, at)) handle(press);
  }

  function tick(): void {
    timer = undefined;
    if (!running) return;
    receiver.expire(clock.now());
    timer = clock.setTimeout(tick, expireMs);
  }

  return {
    start() {
      if (running) return;
      running = true;
      unsubscribe.push(
        bus.onData(onData),
        // A frame cut by the outage will never be completed: do not glue its head to new bytes.
        bus.onUp(() => {
          receiver.reset();
          announceComm(false);
        }),
        bus.onDown((reason) => {
          receiver.reset();
          log.warn({ reason, pagers: deps.devices().length }, 'rf bridge bus down: pagers on it are not heard');
          announceComm(true);
        }),
      );
      timer = clock.setTimeout(tick, expireMs);
    },
    stop() {
      running = false;
      for (const off of unsubscribe.splice(0)) off();
      if (timer !== undefined) clock.clearTimeout(timer);
      timer = undefined;
    },
    unregistered() {
      return [...strangers.values()].reverse().map((s) => ({ ...s }));
    },
    stats() {
      const c = receiver.counters;
      return {
        bus: bus.id,
        frames: c.frames,
        skippedBytes: c.skippedBytes,
        rejectedCandidates: c.rejectedCandidates,
        words: c.words,
        presses: c.presses,
        straySos: c.straySos,
        evicted: c.evicted,
        readings,
        unknownKeys,
        decodeErrors,
        unregisteredPresses,
        unregisteredIds: strangers.size,
      };
    },
  };
}
