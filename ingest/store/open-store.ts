import { statSync } from 'node:fs';
import type Database from 'better-sqlite3';
import { isAlarmReading, type Reading } from '../../devices/reading.js';
import { openConnection } from './connection.js';
import { prepareConsumers } from './consumers.js';
import { prepareDeadLetters, type DeadLetterRecord } from './dead-letters.js';
import { prepareDeviceStates } from './device-states.js';
import { StoreError, sqliteCode } from './errors.js';
import { createGroupCommit } from './group-commit.js';
import { prepareKv } from './kv.js';
import { parseTuning, type OpenStoreOptions } from './options.js';
import { createOutbox } from './outbox.js';
import { prepareReadings } from './readings.js';
import { prepareRetention } from './retention.js';
import { migrate } from './schema.js';
import type {
  CommitListener,
  ConsumerInfo,
  DeadLetter,
  DeadLetterInput,
  DeviceState,
  PruneOptions,
  ReadingQuery,
  RegisterConsumerOptions,
  StoreStats,
  StoredReading,
} from './types.js';

/**
 * The durable local store (DESIGN.md: the only hand-off between stages). One writer connection,
 * synchronous better-sqlite3 calls, group commit for readings and dead letters.
 */
export interface Store {
  /**
   * Queues a reading for the next group commit. Resolves with its sequence number only after the
   * transaction holding it has committed (SPEC §3: the PUBACK waits for this); rejects with
   * `STORE_ERR_WRITE` when that transaction failed — nothing of it is stored then. A reading with
   * an alarm event (`isAlarmReading`) commits its batch at once.
   */
  append(reading: Reading): Promise<number>;
  /** `append` for many; resolves with their seqs in order once all are committed. */
  appendMany(readings: readonly Reading[]): Promise<number[]>;
  /**
   * Disk-full mode (SPEC-NOTES "Disk full"): while on, `append` rejects plain telemetry (no event
   * but `heartbeat`) at once with `STORE_ERR_FULL` — the pipeline drops it — and dead letters are
   * not kept. Readings with any other event (alarms, and state edges such as leakage, fire_clear,
   * cancel) are stored as always. Counted in `stats()`.
   */
  refuseTelemetry(on: boolean): void;
  /** Commits whatever is queued now (shutdown, tests). */
  flush(): void;
  /**
   * Called after each commit with the batch's readings in seq order (rule engine, sink wake-ups).
   * A throwing listener is logged under its name and does not affect the others. Returns `off`.
   */
  onCommit(listener: CommitListener, name?: string): () => void;

  /** Creates the consumer if missing (at the end by default; see `from`), else returns it unchanged. */
  registerConsumer(name: string, options?: RegisterConsumerOptions): ConsumerInfo;
  /** Forgets a consumer (a sink removed from the config), so it no longer holds the outbox. */
  removeConsumer(name: string): boolean;
  listConsumers(): ConsumerInfo[];
  /** Up to `limit` readings after the consumer's cursor (or after `after`), in seq order. */
  readAfter(consumer: string, limit: number, after?: number): StoredReading[];
  /** Moves the durable cursor: every reading with `seq <= seq` is delivered. Never moves back. */
  ack(consumer: string, seq: number): void;
  /** The priority lane: undelivered alarm readings after max(cursor, alarmCursor), in seq order. */
  readAlarmsAfter(consumer: string, limit: number): StoredReading[];
  /** Marks alarms up to `seq` as delivered ahead of the cursor. They come again through `readAfter` (at least once). */
  ackAlarms(consumer: string, seq: number): void;
  /** Readings the consumer has not acknowledged. */
  depth(consumer: string): number;
  /** Age (by the clock, from `receivedAt`) of the oldest reading the consumer has not acknowledged. */
  oldestUnsentAge(consumer: string): number | undefined;

  /** `GET /api/readings`: one device's readings by `ts`. */
  queryReadings(query: ReadingQuery): StoredReading[];
  /** Deletes expired readings that every consumer has acknowledged, chunk by chunk, yielding between. */
  pruneExpired(options: PruneOptions): Promise<{ deleted: number; more: boolean }>;

  /** Records rejected input; committed with the next batch (never throws; a failure is logged). */
  deadLetter(letter: DeadLetterInput): void;
  /** Newest first. */
  listDeadLetters(options?: { limit?: number; before?: number }): DeadLetter[];
  deadLetterCounts(): Record<string, number>;

  getDeviceState(deviceId: string): DeviceState | undefined;
  /** Every device's stored state (at start: codecs' previous state, offline timers' last-seen). */
  loadDeviceStates(): DeviceState[];

  getJson<T = unknown>(key: string): T | undefined;
  setJson(key: string, value: unknown): void;
  deleteJson(key: string): boolean;
  jsonKeys(prefix: string): string[];
  /**
   * Runs `fn` in one transaction (nested calls become savepoints), for several `setJson` /
   * `deleteJson` that must land together. Only the JSON methods (and `append`, which is queued
   * until after it) may be called inside it.
   */
  transaction<T>(fn: () => T): T;

  stats(): StoreStats;
  /** Commits what is queued, then closes the database. Later calls reject with `STORE_ERR_CLOSED`. */
  close(): Promise<void>;
}

type Item = { readonly type: 'reading'; readonly reading: Reading; readonly alarm: boolean } | { readonly type: 'dead'; readonly letter: DeadLetterRecord };

const ERROR_LOG_INTERVAL_MS = 10_000;

export function openStore(options: OpenStoreOptions): Store {
  const tuning = parseTuning(options);
  const { path, clock, logger } = options;
  const db = openConnection(path, tuning, logger);
  try {
    migrate(db);
    return build(db);
  } catch (err) {
    db.close();
    throw err instanceof StoreError ? err : new StoreError('STORE_ERR_OPEN', path, { cause: err });
  }

  function build(db: Database.Database): Store {
    const readings = prepareReadings(db);
    const consumers = prepareConsumers(db, clock);
    const deviceStates = prepareDeviceStates(db);
    const deadLetters = prepareDeadLetters(db, { max: tuning.deadLetterMax, payloadMaxBytes: tuning.deadLetterPayloadMaxBytes });
    const kv = prepareKv(db, clock);
    const retention = prepareRetention(db);
    const outbox = createOutbox({ db, readings, consumers, maxBytes: tuning.outboxMaxBytes, clock, logger });

    const initial = readings.totals();
    const totals = { rows: initial.rows, bytes: initial.bytes, lastSeq: readings.lastSeq() };
    const counters = { commitBatches: 0, committedRows: 0, failedBatches: 0, lastCommitMs: 0, lastBatchRows: 0, prunedForSpace: 0, refusedTelemetry: 0, refusedDeadLetters: 0 };
    let refusing = false;
    const listeners = new Map<CommitListener, string>();
    let closed = false;
    let lastErrorLogAt = -Infinity;
    let failuresSinceLog = 0;

    const runBatch = db.transaction((items: readonly Item[]) => {
      const results: (number | undefined)[] = [];
      const stored: StoredReading[] = [];
      let bytes = 0;
      let newestDeadLetter = 0;
      let urgent = false;
      for (const item of items) {
        if (item.type === 'reading') {
          const row = readings.insert(item.reading, item.alarm);
          results.push(row.seq);
          stored.push({ seq: row.seq, reading: item.reading });
          bytes += row.bytes;
          urgent ||= item.alarm;
        } else {
          newestDeadLetter = deadLetters.insert(item.letter);
          results.push(undefined);
        }
      }
      if (newestDeadLetter > 0) deadLetters.trim(newestDeadLetter);
      const states = deviceStates.write(stored);
      const avgRowBytes = (totals.bytes + bytes) / Math.max(1, totals.rows + stored.length);
      // An alarm's commit does not wait for the clean-up: the next telemetry batch drops for it.
      // Otherwise at most a little more than the batch brought in, so a commit stays short.
      const drop = urgent ? undefined : outbox.enforce(bytes, avgRowBytes, Math.max(1000, 2 * stored.length));
      return { results, stored, bytes, states, drop };
    });

    // Only after COMMIT returned: memory follows the database, never leads it.
    function applyBatch(r: ReturnType<typeof runBatch>, started: number): void {
      totals.rows += r.stored.length - (r.drop?.rows ?? 0);
      totals.bytes += r.bytes - (r.drop?.bytes ?? 0);
      const last = r.stored.at(-1);
      if (last) totals.lastSeq = last.seq;
      outbox.applyCommit(r.stored.length, r.bytes, r.drop);
      deviceStates.apply(r.states);
      counters.commitBatches++;
      counters.committedRows += r.results.length;
      counters.lastBatchRows = r.results.length;
      counters.lastCommitMs = performance.now() - started;
    }

    /** SQLITE_FULL: give up the oldest telemetry (delivered history first) so the batch fits. */
    function makeRoom(rowsWanted: number): boolean {
      try {
        const freed = db.transaction(() => outbox.makeRoom(rowsWanted, totals.lastSeq)).immediate();
        for (const d of [freed.delivered, freed.undelivered]) {
          totals.rows -= d.rows;
          totals.bytes -= d.bytes;
        }
        counters.prunedForSpace += freed.delivered.rows;
        outbox.applyRoomMade(freed);
        if (freed.delivered.rows + freed.undelivered.rows === 0) return false;
        logger.warn(
          { deliveredDeleted: freed.delivered.rows, undeliveredDropped: freed.undelivered.rows },
          'store: database full; oldest telemetry deleted to make room',
        );
        return true;
      } catch (err) {
        logger.error({ err }, 'store: database full and no room could be made');
        return false;
      }
    }

    function commit(items: readonly Item[]): readonly (number | undefined)[] {
      const started = performance.now();
      let released = false;
      let madeRoom = false;
      for (;;) {
        let r: ReturnType<typeof runBatch>;
        try {
          r = runBatch.immediate(items);
        } catch (err) {
          // The transaction rolled back as a whole, so it may be tried again: once after the disk
          // guard released its reserve file, once after deleting telemetry made room (an SOS must
          // not be refused because the disk filled with temperatures).
          if (sqliteCode(err) === 'SQLITE_FULL') {
            if (!released) {
              released = true;
              if (options.onFull?.() === true) continue;
            }
            if (!madeRoom) {
              madeRoom = true;
              if (makeRoom(Math.max(1000, 2 * items.length))) continue;
            }
          }
          counters.failedBatches++;
          failuresSinceLog++;
          const now = clock();
          if (now - lastErrorLogAt >= ERROR_LOG_INTERVAL_MS) {
            lastErrorLogAt = now;
            logger.error({ err, code: sqliteCode(err), rows: items.length, failedBatches: failuresSinceLog }, 'store: commit failed; its rows were not stored');
            failuresSinceLog = 0;
          }
          throw err;
        }
        // Outside the try: once COMMIT has returned nothing may retry (that would store it twice).
        applyBatch(r, started);
        return r.results;
      }
    }

    const batcher = createGroupCommit<Item, number | undefined>({
      maxDelayMs: tuning.groupCommit.maxDelayMs,
      maxRows: tuning.groupCommit.maxRows,
      isUrgent: (item) => item.type === 'reading' && item.alarm,
      commit,
      toError: (err, items) =>
        new StoreError('STORE_ERR_WRITE', `${sqliteCode(err) ?? 'error'} (${items.length} rows in the batch)`, { cause: err }),
      canFlushNow: () => !db.inTransaction,
      afterCommit: (items, results) => {
        if (listeners.size === 0) return;
        const batch: StoredReading[] = [];
        items.forEach((item, i) => {
          if (item.type === 'reading') batch.push({ seq: results[i] as number, reading: item.reading });
        });
        if (batch.length === 0) return;
        for (const [listener, name] of listeners) {
          try {
            listener(batch);
          } catch (err) {
            logger.error({ err, listener: name }, 'store: commit listener failed');
          }
        }
      },
    });

    function assertOpen(): void {
      if (closed) throw new StoreError('STORE_ERR_CLOSED');
    }
    // Methods that keep in-memory state in step with a write must not run in a caller's
    // transaction: its rollback would leave the memory ahead of the database.
    function assertOutsideTransaction(method: string): void {
      assertOpen();
      if (db.inTransaction) throw new TypeError(`store.${method}() cannot be called inside store.transaction()`);
    }

    function ackTo(consumer: string, seq: number): void {
      const c = consumers.get(consumer);
      if (seq > totals.lastSeq) throw new StoreError('STORE_ERR_CURSOR', `${consumer} acked ${seq}, last committed is ${totals.lastSeq}`);
      if (seq <= c.cursor) return;
      const oldMin = consumers.minCursor() ?? 0;
      consumers.setCursor(consumer, seq);
      outbox.acked(consumer, c.cursor, seq, oldMin);
    }

    function add(reading: Reading): Promise<number> {
      const alarm = isAlarmReading(reading);
      if (refusing && isPlainTelemetry(reading)) {
        counters.refusedTelemetry++;
        return Promise.reject(new StoreError('STORE_ERR_FULL', reading.deviceId));
      }
      return batcher.add({ type: 'reading', reading, alarm }) as Promise<number>;
    }

    const store: Store = {
      append(reading) {
        if (closed) return Promise.reject(new StoreError('STORE_ERR_CLOSED'));
        return add(reading);
      },
      appendMany(list) {
        if (closed) return Promise.reject(new StoreError('STORE_ERR_CLOSED'));
        return Promise.all(list.map(add));
      },
      refuseTelemetry(on) {
        if (on === refusing) return;
        refusing = on;
        logger.warn({ refusedTelemetry: counters.refusedTelemetry }, on ? 'store: disk full; telemetry refused, alarms still stored' : 'store: telemetry accepted again');
      },
      flush() {
        if (!closed) batcher.flush();
      },
      onCommit(listener, name = listener.name || 'anonymous') {
        listeners.set(listener, name);
        return () => {
          listeners.delete(listener);
        };
      },

      registerConsumer(name, opts = {}) {
        assertOutsideTransaction('registerConsumer');
        if (consumers.has(name)) return consumers.get(name);
        const oldMin = consumers.minCursor();
        const info = consumers.insert(name, opts.from === 'start' ? 0 : totals.lastSeq);
        outbox.consumerAdded(name, info.cursor, oldMin);
        logger.info({ consumer: name, cursor: info.cursor }, 'store: consumer registered');
        return info;
      },
      removeConsumer(name) {
        assertOutsideTransaction('removeConsumer');
        const oldMin = consumers.minCursor();
        const removed = consumers.remove(name);
        if (removed) {
          outbox.consumerRemoved(name, oldMin);
          logger.info({ consumer: name }, 'store: consumer removed');
        }
        return removed;
      },
      listConsumers() {
        assertOpen();
        return consumers.list();
      },
      readAfter(consumer, limit, after) {
        assertOpen();
        const c = consumers.get(consumer);
        return readings.after(after ?? c.cursor, clampLimit(limit));
      },
      ack(consumer, seq) {
        assertOutsideTransaction('ack');
        ackTo(consumer, seq);
      },
      readAlarmsAfter(consumer, limit) {
        assertOpen();
        const c = consumers.get(consumer);
        return readings.alarmsAfter(Math.max(c.cursor, c.alarmCursor), clampLimit(limit));
      },
      ackAlarms(consumer, seq) {
        assertOutsideTransaction('ackAlarms');
        const c = consumers.get(consumer);
        if (seq > totals.lastSeq) throw new StoreError('STORE_ERR_CURSOR', `${consumer} acked alarm ${seq}, last committed is ${totals.lastSeq}`);
        if (seq > c.alarmCursor) consumers.setAlarmCursor(consumer, seq);
      },
      depth(consumer) {
        assertOpen();
        return outbox.depth(consumers.get(consumer).name);
      },
      oldestUnsentAge(consumer) {
        assertOpen();
        const at = readings.firstReceivedAfter(consumers.get(consumer).cursor);
        return at === undefined ? undefined : Math.max(0, clock() - at);
      },

      queryReadings(query) {
        assertOpen();
        return readings.query(query);
      },
      async pruneExpired({ retentionMs, chunkRows = 500, maxChunks = Number.POSITIVE_INFINITY }) {
        assertOutsideTransaction('pruneExpired');
        const cutoff = clock() - retentionMs;
        let deleted = 0;
        for (let chunk = 0; chunk < maxChunks; chunk++) {
          if (closed) return { deleted, more: false };
          const floor = consumers.minCursor() ?? totals.lastSeq;
          const r = retention.deleteChunk(floor, Math.max(1, Math.floor(chunkRows)), cutoff);
          totals.rows -= r.rows;
          totals.bytes -= r.bytes;
          deleted += r.rows;
          if (r.rows === 0) return { deleted, more: false };
          // Let MQTT, commits and timers run between chunks.
          await new Promise<void>((resolve) => setImmediate(resolve));
        }
        return { deleted, more: true };
      },

      deadLetter(letter) {
        if (closed) {
          logger.warn({ source: letter.source, reason: letter.reason }, 'store: dead letter after close; not kept');
          return;
        }
        // Disk full: the space left is for alarms. The rejection itself is still counted by its source.
        if (refusing) {
          counters.refusedDeadLetters++;
          return;
        }
        batcher.addDetached({ type: 'dead', letter: { ...letter, at: clock() } }, (err) => {
          logger.error({ err, source: letter.source, reason: letter.reason }, 'store: dead letter not stored');
        });
      },
      listDeadLetters({ limit = 100, before } = {}) {
        assertOpen();
        return deadLetters.list(limit, before);
      },
      deadLetterCounts() {
        assertOpen();
        return deadLetters.counts();
      },

      getDeviceState(deviceId) {
        return deviceStates.get(deviceId);
      },
      loadDeviceStates() {
        return deviceStates.all();
      },

      getJson<T = unknown>(key: string): T | undefined {
        assertOpen();
        return kv.get<T>(key);
      },
      setJson(key, value) {
        assertOpen();
        kv.set(key, value);
      },
      deleteJson(key) {
        assertOpen();
        return kv.remove(key);
      },
      jsonKeys(prefix) {
        assertOpen();
        return kv.keys(prefix);
      },
      transaction<T>(fn: () => T): T {
        assertOpen();
        return db.transaction(fn).immediate();
      },

      stats() {
        assertOpen();
        const pending: Record<string, number> = {};
        for (const c of consumers.list()) pending[c.name] = outbox.depth(c.name);
        return {
          rows: totals.rows,
          bytes: totals.bytes,
          lastSeq: totals.lastSeq,
          outboxBytes: outbox.bytes,
          outboxMaxBytes: tuning.outboxMaxBytes,
          pending,
          droppedTelemetry: outbox.droppedTelemetry,
          prunedForSpace: counters.prunedForSpace,
          telemetryRefused: refusing,
          refusedTelemetry: counters.refusedTelemetry,
          refusedDeadLetters: counters.refusedDeadLetters,
          commitBatches: counters.commitBatches,
          committedRows: counters.committedRows,
          failedBatches: counters.failedBatches,
          lastCommitMs: counters.lastCommitMs,
          lastBatchRows: counters.lastBatchRows,
          queued: batcher.queued,
          deadLetters: deadLetters.rows(),
          deadLettersByReason: deadLetters.counts(),
          dbFileBytes: fileSize(path) + fileSize(`${path}-wal`),
          journalMode: db.pragma('journal_mode', { simple: true }) as string,
          synchronous: db.pragma('synchronous', { simple: true }) as number,
        };
      },
      close() {
        if (closed) return Promise.resolve();
        batcher.flush();
        closed = true;
        listeners.clear();
        db.close();
        return Promise.resolve();
      },
    };
    return store;
  }
}

/** What disk-full mode refuses: a reading that changes nothing but metrics and last-seen. */
function isPlainTelemetry(reading: Reading): boolean {
  return reading.events.every((e) => e === 'heartbeat');
}

function clampLimit(limit: number): number {
  return Math.min(Math.max(1, Math.floor(limit)), 100_000);
}

function fileSize(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}
