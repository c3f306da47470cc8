import type { Reading } from '../../devices/reading.js';
import { backoffDelay, resolveBackoff, type BackoffOptions } from './backoff.js';
import { systemClock, type SinkClock } from './clock.js';
import { readingToLine } from './line-protocol.js';
import { SinkWriteError, messageOf, type Sink, type SinkLogger, type SinkWriteErrorKind } from './sink.js';

/**
 * A committed entry and its sequence number: a reading (the store's `StoredReading` fits), or a
 * line its source built itself (incident changes, SPEC §5 measurement `incident`; null: nothing
 * to write) with the device it concerns, for logs and dead letters.
 */
export type SinkSourceEntry =
  | { readonly seq: number; readonly reading: Reading }
  | { readonly seq: number; readonly line: string | null; readonly deviceId?: string };

/**
 * The durable outbox of one sink, as narrow as the runner needs it (DESIGN.md: sinks read the
 * store by cursor). The runner never acks past what the server accepted, so after a crash or a
 * restart delivery resumes from the cursor: at least once (SPEC §5).
 */
export interface SinkSource {
  /**
   * Up to `limit` entries after the durable cursor, in `seq` order — or after `after`, when given
   * (the runner reads the next batch while the current one is being written).
   */
  read(limit: number, after?: number): readonly SinkSourceEntry[];
  /** Every entry with `seq` ≤ this one is delivered: move the durable cursor. */
  ack(seq: number): void;
  /** Entries after the cursor. */
  depth(): number;
  /** How long the oldest entry after the cursor has been in the store (commit time), ms; 0 when none. */
  oldestUnsentAgeMs(): number;
}

/** A point the server still refused on its own (SPEC §5: isolated and dead-lettered). */
export interface SinkDeadLetter {
  readonly sink: string;
  readonly code: 'SINK_ERR_REJECTED';
  readonly seq: number;
  /** The reading, when the entry was one. */
  readonly reading?: Reading;
  readonly deviceId: string | undefined;
  /** The line as it was sent. */
  readonly line: string;
  /** The server's own message (`partial write: field type conflict: … dropped=1`). */
  readonly message: string;
  readonly status: number | undefined;
  readonly at: number;
}

export interface SinkRunnerOptions {
  readonly sink: Sink;
  readonly source: SinkSource;
  readonly logger: SinkLogger;
  /** Called once for each isolated bad point, before its seq is acked. Errors are logged, not retried. */
  readonly onDeadLetter: (entry: SinkDeadLetter) => void | Promise<void>;
  readonly clock?: SinkClock;
  /** In [0, 1): the jitter's randomness. Default Math.random. */
  readonly random?: () => number;
  /** Points per write. Default 5000 (SPEC §5). */
  readonly batchSize?: number;
  /** The longest a point waits for its batch to fill, ms. Default 1000 (SPEC §5). */
  readonly flushIntervalMs?: number;
  readonly backoff?: Partial<BackoffOptions>;
  /** A write that has not settled after this long counts as `unavailable`, ms. Default 60 000. */
  readonly writeTimeoutMs?: number;
  /** How long stop() waits for a write in flight, ms. Default 10 000. */
  readonly stopTimeoutMs?: number;
}

export type SinkRunnerState = 'stopped' | 'idle' | 'writing' | 'backoff';

export interface SinkLastError {
  /** `source`: reading or acking the store failed. */
  readonly kind: SinkWriteErrorKind | 'source';
  readonly message: string;
  readonly at: number;
}

/** One sink's part of `/healthz` (SPEC §8). Counters only grow. */
export interface SinkHealth {
  readonly name: string;
  readonly state: SinkRunnerState;
  /** False from a failed attempt until the next successful write. */
  readonly ok: boolean;
  /** Entries not yet delivered; null when the source cannot say. */
  readonly depth: number | null;
  readonly oldestUnsentAgeMs: number | null;
  /** The most recent failure; it stays after a recovery (see `ok`). */
  readonly lastError: SinkLastError | null;
  readonly lastSuccessAt: number | null;
  /** When the next retry is due, while in `backoff`. */
  readonly nextRetryAt: number | null;
  /** Points the server accepted (each point once, however often bisection re-sent it). */
  readonly pointsWritten: number;
  /** Batches read from the source and acked. */
  readonly batches: number;
  /** Writes repeated after an `unavailable` or `config` failure. */
  readonly retries: number;
  readonly deadLettered: number;
  /** Readings with nothing to write (no field at all): acked without a line. */
  readonly skipped: number;
}

export interface SinkRunner {
  /** Starts the delivery loop; a backlog already in the source goes out at once. */
  start(): void;
  /**
   * Stops the loop, waiting for a write in flight to settle (up to `stopTimeoutMs`). Its result
   * is acked only if it settles in time; otherwise it is re-sent after the next start (the
   * write is idempotent). The sink itself is not closed: its owner closes it.
   */
  stop(): Promise<void>;
  /** New entries were committed: the pipeline calls this after each commit. */
  notify(): void;
  health(): SinkHealth;
}

interface Run {
  active: boolean;
  /** stop() gave up waiting: whatever this run's write returns is ignored (no ack). */
  abandoned: boolean;
  sleeper: { readonly wakeOnNotify: boolean; wake(): void } | undefined;
  done: Promise<void>;
  stopping: Promise<void> | undefined;
}

interface Item {
  readonly seq: number;
  readonly reading: Reading | undefined;
  readonly deviceId: string | undefined;
  readonly line: string;
}

function itemOf(entry: SinkSourceEntry): Item | null {
  if ('reading' in entry) {
    const line = readingToLine(entry.reading);
    return line === null ? null : { seq: entry.seq, reading: entry.reading, deviceId: entry.reading.deviceId, line };
  }
  return entry.line === null ? null : { seq: entry.seq, reading: undefined, deviceId: entry.deviceId, line: entry.line };
}

const STOPPED = Symbol('stopped');

/**
 * Delivers one sink's outbox (SPEC §5): batches of up to `batchSize` points or `flushIntervalMs`,
 * retry with exponential backoff and jitter while the server is down (never ack, never drop),
 * and a batch the server rejects is bisected until each bad point stands alone and is
 * dead-lettered, while the rest is written and acked. One write at a time.
 */
export function createSinkRunner(options: SinkRunnerOptions): SinkRunner {
  const { sink, source, logger, onDeadLetter } = options;
  const clock = options.clock ?? systemClock;
  const random = options.random ?? Math.random;
  const batchSize = positiveInteger('batchSize', options.batchSize ?? 5000);
  const flushIntervalMs = nonNegative('flushIntervalMs', options.flushIntervalMs ?? 1000);
  const writeTimeoutMs = positive('writeTimeoutMs', options.writeTimeoutMs ?? 60_000);
  const stopTimeoutMs = nonNegative('stopTimeoutMs', options.stopTimeoutMs ?? 10_000);
  const backoff = resolveBackoff(options.backoff);
  const log = { sink: sink.name };

  const counters = { pointsWritten: 0, batches: 0, retries: 0, deadLettered: 0, skipped: 0 };
  let state: SinkRunnerState = 'stopped';
  let lastError: SinkLastError | null = null;
  let lastSuccessAt: number | null = null;
  let nextRetryAt: number | null = null;
  /** Consecutive failed attempts (writes or source calls); 0 after a success. */
  let failures = 0;
  let current: Run | undefined;

  const setState = (r: Run, s: SinkRunnerState): void => {
    if (current === r) state = s;
  };

  const sleep = (r: Run, ms: number, wakeOnNotify: boolean): Promise<void> => {
    if (!r.active) return Promise.resolve();
    return new Promise((resolve) => {
      const timer: { handle?: unknown } = {};
      const sleeper = {
        wakeOnNotify,
        wake: (): void => {
          if (r.sleeper !== sleeper) return;
          r.sleeper = undefined;
          clock.clearTimeout(timer.handle);
          resolve();
        },
      };
      r.sleeper = sleeper;
      timer.handle = clock.setTimeout(sleeper.wake, Math.max(0, ms));
    });
  };

  const recordFailure = (kind: SinkLastError['kind'], message: string, err: unknown): void => {
    failures++;
    const first = lastError === null || failures === 1 || lastError.kind !== kind;
    lastError = { kind, message, at: clock.now() };
    // One warning per outage (and per change of cause), not one per retry.
    if (first) logger.warn({ ...log, kind, err }, `sink ${sink.name}: ${kind === 'source' ? 'reading the outbox failed' : 'write failed'}; retrying with backoff`);
    else logger.debug({ ...log, kind, attempt: failures, err }, `sink ${sink.name}: still failing`);
  };

  /** The server answered (accepted, or rejected some points): whatever outage there was is over. */
  const recordAnswer = (): void => {
    if (failures > 0) logger.info({ ...log, failedAttempts: failures }, `sink ${sink.name}: the server answers again`);
    failures = 0;
  };

  /** Waits before the next attempt; a `config` error waits the longest (it needs an operator). */
  const backOff = async (r: Run, err: SinkWriteError | undefined): Promise<void> => {
    const attempt = err?.kind === 'config' ? Number.MAX_SAFE_INTEGER : failures;
    let delay = backoffDelay(attempt, backoff, random);
    if (err?.retryAfterMs !== undefined) delay = Math.max(delay, Math.min(err.retryAfterMs, backoff.maxMs));
    nextRetryAt = clock.now() + delay;
    setState(r, 'backoff');
    await sleep(r, delay, false);
    nextRetryAt = null;
  };

  const sourceFailed = async (r: Run, err: unknown): Promise<void> => {
    recordFailure('source', messageOf(err), err);
    await backOff(r, undefined);
  };

  /** One write, with a deadline so that a sink that never settles cannot wedge the loop. */
  const write = async (lines: readonly string[]): Promise<SinkWriteError | null> => {
    let handle: unknown;
    const deadline = new Promise<SinkWriteError>((resolve) => {
      handle = clock.setTimeout(() => resolve(new SinkWriteError('unavailable', `write did not settle within ${writeTimeoutMs} ms`)), writeTimeoutMs);
    });
    const attempt = sink.write(lines).then(
      () => null,
      (err: unknown) => (err instanceof SinkWriteError ? err : new SinkWriteError('unavailable', messageOf(err), { cause: err })),
    );
    try {
      return await Promise.race([attempt, deadline]);
    } finally {
      clock.clearTimeout(handle);
    }
  };

  /**
   * One attempt, with the bookkeeping: null = accepted, an error = rejected (the server answered),
   * `retry` = unavailable or config (recorded, caller backs off), STOPPED = stop() gave up on it.
   */
  const attempt = async (r: Run, lines: readonly string[]): Promise<SinkWriteError | null | 'retry' | typeof STOPPED> => {
    const err = await write(lines);
    if (r.abandoned) return STOPPED;
    if (err === null) {
      recordAnswer();
      lastSuccessAt = clock.now();
      return null;
    }
    if (err.kind === 'rejected') {
      // The server answered and keeps the other points: not an outage, so no backoff.
      recordAnswer();
      lastError = { kind: 'rejected', message: err.message, at: clock.now() };
      return err;
    }
    recordFailure(err.kind, err.message, err);
    if (!r.active) return STOPPED;
    await backOff(r, err);
    if (!r.active) return STOPPED;
    counters.retries++;
    return 'retry';
  };

  /** The same lines until the server answers: for bisection, whose ranges must not change. */
  const writeUntilAnswered = async (r: Run, lines: readonly string[]): Promise<SinkWriteError | null | typeof STOPPED> => {
    for (;;) {
      const answer = await attempt(r, lines);
      if (answer !== 'retry') return answer;
    }
  };

  let lastAck: number | undefined;
  const ack = (seq: number): boolean => {
    // Bisection acks its completed prefix; the batch's final ack may repeat the last of those.
    if (seq === lastAck) return true;
    try {
      source.ack(seq);
      lastAck = seq;
      return true;
    } catch (err) {
      // Not fatal: acks are cumulative, and whatever is not acked is re-sent (idempotent).
      recordFailure('source', messageOf(err), err);
      return false;
    }
  };

  const deadLetter = async (item: Item, err: SinkWriteError): Promise<void> => {
    counters.deadLettered++;
    const entry: SinkDeadLetter = {
      sink: sink.name,
      code: 'SINK_ERR_REJECTED',
      seq: item.seq,
      ...(item.reading !== undefined ? { reading: item.reading } : {}),
      deviceId: item.deviceId,
      line: item.line,
      message: err.message,
      status: err.status,
      at: clock.now(),
    };
    logger.warn({ ...log, seq: item.seq, deviceId: item.deviceId, status: err.status, reason: err.message }, `sink ${sink.name}: point rejected; dead-lettered`);
    try {
      await onDeadLetter(entry);
    } catch (handlerErr) {
      // Bulkhead: a failing handler must not block the outbox. The log keeps the point.
      logger.error({ ...log, err: handlerErr, seq: item.seq, line: item.line }, `sink ${sink.name}: dead-letter handler failed`);
    }
  };

  /**
   * The batch was rejected as a whole. InfluxDB has written the good points already (partial
   * write), but does not say which points were bad: bisect, in order, re-writing halves (same
   * series and timestamp overwrite, so re-writing a good point is harmless) until every rejected
   * range is one point, and dead-letter those. Acks follow the completed prefix.
   */
  const isolate = async (r: Run, items: readonly Item[], first: SinkWriteError): Promise<number | typeof STOPPED> => {
    let dead = 0;
    const stack: [number, number, SinkWriteError | null][] = [[0, items.length, first]];
    while (stack.length > 0) {
      const [start, end, known] = stack.pop() as [number, number, SinkWriteError | null];
      let err = known;
      if (err === null) {
        const answer = await writeUntilAnswered(
          r,
          items.slice(start, end).map((i) => i.line),
        );
        if (answer === STOPPED) return STOPPED;
        err = answer;
      }
      if (err === null) {
        ack((items[end - 1] as Item).seq);
        continue;
      }
      if (end - start === 1) {
        const item = items[start] as Item;
        await deadLetter(item, err);
        dead++;
        ack(item.seq);
        continue;
      }
      const mid = (start + end) >>> 1;
      stack.push([mid, end, null], [start, mid, null]);
    }
    return dead;
  };

  /**
   * The batch after the one being written, read and encoded while the write is in flight: a
   * backlog drains at the pace of the server, not of the server plus our own reading and encoding
   * (issue 7: the drain rate). Used only if the write it followed was acked; else dropped.
   */
  let readAhead: { after: number; entries: readonly SinkSourceEntry[] } | undefined;

  const readNext = (after: number): void => {
    try {
      readAhead = { after, entries: source.read(batchSize, after) };
    } catch {
      readAhead = undefined; // read again in turn, where a failure is recorded and backed off
    }
  };

  /** Reads one batch and delivers it; returns how many entries it acked (0: nothing, or stopped). */
  const deliverBatch = async (r: Run): Promise<number> => {
    for (;;) {
      if (!r.active) return 0;
      let entries: readonly SinkSourceEntry[];
      const ahead = readAhead;
      readAhead = undefined;
      try {
        // Read again for every attempt: while the server is down the head of the outbox stays
        // put and the batch grows up to batchSize, so recovery starts with full batches.
        entries = ahead !== undefined && ahead.after === lastAck && ahead.entries.length > 0 ? ahead.entries : source.read(batchSize);
      } catch (err) {
        await sourceFailed(r, err);
        return 0;
      }
      const lastEntry = entries[entries.length - 1];
      if (lastEntry === undefined) {
        // depth() said there was something: do not spin on a source that disagrees with itself.
        await sleep(r, flushIntervalMs, true);
        return 0;
      }

      const items: Item[] = [];
      for (const entry of entries) {
        const item = itemOf(entry);
        if (item !== null) items.push(item);
      }

      let dead = 0;
      if (items.length > 0) {
        setState(r, 'writing');
        const pending = attempt(
          r,
          items.map((i) => i.line),
        );
        // A full batch means a backlog: read the next one while this one is on the wire.
        if (entries.length === batchSize) readNext(lastEntry.seq);
        const answer = await pending;
        if (answer !== null) readAhead = undefined;
        if (answer === STOPPED) return 0;
        if (answer === 'retry') continue;
        if (answer !== null) {
          const isolated = await isolate(r, items, answer);
          if (isolated === STOPPED) return 0;
          dead = isolated;
        }
      }
      if (!ack(lastEntry.seq)) {
        await backOff(r, undefined);
        return 0;
      }
      counters.pointsWritten += items.length - dead;
      counters.skipped += entries.length - items.length;
      counters.batches++;
      return entries.length;
    }
  };

  const loop = async (r: Run): Promise<void> => {
    // A backlog found at start (or left by a full batch) goes out without waiting for the window.
    let draining = true;
    let lingerStart: number | undefined;
    while (r.active) {
      let depth: number;
      try {
        depth = source.depth();
      } catch (err) {
        await sourceFailed(r, err);
        continue;
      }
      if (depth <= 0) {
        draining = false;
        lingerStart = undefined;
        setState(r, 'idle');
        // Poll as well as wait for notify(): a commit that did not notify still goes out.
        await sleep(r, flushIntervalMs, true);
        continue;
      }
      if (!draining && depth < batchSize) {
        const now = clock.now();
        if (lingerStart === undefined) {
          let age = 0;
          try {
            age = source.oldestUnsentAgeMs();
          } catch {
            // depth() worked a moment ago; a missing age only costs one window.
          }
          lingerStart = now - Math.min(flushIntervalMs, Math.max(0, age));
        }
        // The wall clock stepped back past the window's start: one more window, not the step's length.
        if (lingerStart > now) lingerStart = now;
        const wait = lingerStart + flushIntervalMs - now;
        if (wait > 0) {
          setState(r, 'idle');
          await sleep(r, wait, true);
          continue;
        }
      }
      lingerStart = undefined;
      const sent = await deliverBatch(r);
      // A failed attempt (0) keeps the mode it was in: a backlog is still a backlog after a backoff.
      if (sent > 0) draining = sent >= batchSize;
    }
  };

  const runLoop = async (r: Run): Promise<void> => {
    try {
      await loop(r);
    } catch (err) {
      // Every call above is guarded; this is a bug. Say so loudly rather than die silently.
      logger.error({ ...log, err }, `sink ${sink.name}: delivery loop crashed`);
      lastError = { kind: 'unavailable', message: `delivery loop crashed: ${messageOf(err)}`, at: clock.now() };
      failures++;
      r.active = false;
    } finally {
      setState(r, 'stopped');
    }
  };

  return {
    start() {
      if (current?.active) return;
      const r: Run = { active: true, abandoned: false, sleeper: undefined, done: Promise.resolve(), stopping: undefined };
      current = r;
      state = 'idle';
      r.done = runLoop(r);
    },

    stop() {
      const r = current;
      if (r === undefined) return Promise.resolve();
      r.stopping ??= (async () => {
        r.active = false;
        r.sleeper?.wake();
        let handle: unknown;
        const timedOut = await Promise.race([
          r.done.then(() => false),
          new Promise<boolean>((resolve) => {
            handle = clock.setTimeout(() => resolve(true), stopTimeoutMs);
          }),
        ]);
        clock.clearTimeout(handle);
        if (timedOut) {
          r.abandoned = true;
          logger.warn({ ...log, stopTimeoutMs }, `sink ${sink.name}: a write was still in flight at stop; it will be re-sent`);
        }
        if (current === r) {
          current = undefined;
          state = 'stopped';
        }
      })();
      return r.stopping;
    },

    notify() {
      const sleeper = current?.active ? current.sleeper : undefined;
      if (sleeper?.wakeOnNotify) sleeper.wake();
    },

    health() {
      return {
        name: sink.name,
        state,
        ok: failures === 0,
        depth: tryOrNull(() => source.depth()),
        oldestUnsentAgeMs: tryOrNull(() => source.oldestUnsentAgeMs()),
        lastError,
        lastSuccessAt,
        nextRetryAt,
        ...counters,
      };
    },
  };
}

function tryOrNull(fn: () => number): number | null {
  try {
    return fn();
  } catch {
    return null;
  }
}

function positiveInteger(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1) throw new RangeError(`sink runner: ${name} must be a positive integer, got ${String(value)}`);
  return value;
}

function positive(name: string, value: number): number {
  if (!Number.isFinite(value) || value <= 0) throw new RangeError(`sink runner: ${name} must be a positive number of ms, got ${String(value)}`);
  return value;
}

function nonNegative(name: string, value: number): number {
  if (!Number.isFinite(value) || value < 0) throw new RangeError(`sink runner: ${name} must be a number of ms ≥ 0, got ${String(value)}`);
  return value;
}
