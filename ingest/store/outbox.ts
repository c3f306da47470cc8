import type Database from 'better-sqlite3';
import type { ConsumersTable } from './consumers.js';
import type { ReadingsTable } from './readings.js';
import type { StoreLogger } from './types.js';

const WARN_INTERVAL_MS = 60_000;

export interface DropResult {
  readonly rows: number;
  readonly bytes: number;
  /** The seqs deleted, ascending. */
  readonly seqs: readonly number[];
}

const NOTHING: DropResult = { rows: 0, bytes: 0, seqs: [] };

/**
 * The bounded outbox of SPEC §5. The outbox is not a second buffer: it is the readings that some
 * consumer has not acknowledged (`seq > min(cursor)`). Its bytes, and each consumer's depth, are
 * running totals kept exact on commit, ack, drop and consumer changes, so neither the bound nor
 * `/metrics` costs a scan; only when a commit takes the outbox over the bound are the oldest
 * undelivered telemetry rows deleted — alarm rows never (SPEC §3, §5).
 */
export function createOutbox(deps: {
  db: Database.Database;
  readings: ReadingsTable;
  consumers: ConsumersTable;
  maxBytes: number;
  clock: () => number;
  logger: StoreLogger;
}) {
  const { db, readings, consumers, maxBytes, clock, logger } = deps;
  const s = {
    // Oldest undelivered telemetry after `seq`. RETURNING gives the bytes freed without a second query.
    dropUndelivered: db.prepare<[number, number], { seq: number; bytes: number }>(
      'DELETE FROM readings WHERE seq IN (SELECT seq FROM readings WHERE seq > ? AND alarm = 0 ORDER BY seq LIMIT ?) RETURNING seq, bytes',
    ),
    // Oldest telemetry every consumer already has: history, the first thing to give up for space.
    dropDelivered: db.prepare<[number, number], { seq: number; bytes: number }>(
      'DELETE FROM readings WHERE seq IN (SELECT seq FROM readings WHERE seq <= ? AND alarm = 0 ORDER BY seq LIMIT ?) RETURNING seq, bytes',
    ),
  };

  let bytes = 0;
  const depths = new Map<string, number>();
  // No undelivered telemetry is left in (minCursor, dropFloor]: the next drop starts after it
  // instead of stepping over the alarms kept there again.
  let dropFloor = 0;
  let droppedTelemetry = 0;
  let droppedSinceWarn = 0;
  let lastDropWarnAt = Number.NEGATIVE_INFINITY;
  let lastAlarmsOnlyWarnAt = Number.NEGATIVE_INFINITY;

  function recomputeBytes(): void {
    const min = consumers.minCursor();
    bytes = min === undefined ? 0 : readings.bytesBetween(min, Number.MAX_SAFE_INTEGER);
    dropFloor = 0;
  }
  // At open: one count per consumer and one sum, each over the undelivered range only.
  recomputeBytes();
  for (const c of consumers.list()) depths.set(c.name, readings.countAfter(c.cursor));

  function deleteUndelivered(excessBytes: number, avgRowBytes: number, maxRows: number): DropResult {
    const min = consumers.minCursor();
    if (min === undefined || excessBytes <= 0 || maxRows <= 0) return NOTHING;
    let from = Math.max(min, dropFloor);
    let excess = excessBytes;
    let freed = 0;
    const seqs: number[] = [];
    while (excess > 0 && seqs.length < maxRows) {
      const want = Math.min(maxRows - seqs.length, Math.max(1, Math.ceil(excess / Math.max(1, avgRowBytes))));
      const deleted = s.dropUndelivered.all(from, want);
      if (deleted.length === 0) break;
      deleted.sort((a, b) => a.seq - b.seq);
      for (const d of deleted) {
        freed += d.bytes;
        excess -= d.bytes;
        seqs.push(d.seq);
      }
      from = seqs.at(-1) ?? from;
    }
    return { rows: seqs.length, bytes: freed, seqs };
  }

  function applyDrop(drop: DropResult, counted: boolean): void {
    if (drop.rows === 0) return;
    const min = consumers.minCursor();
    for (const c of consumers.list()) {
      // Dropped seqs are ascending: count those the consumer had not reached yet.
      let behind = 0;
      for (let i = drop.seqs.length - 1; i >= 0 && (drop.seqs[i] ?? 0) > c.cursor; i--) behind++;
      if (behind > 0) depths.set(c.name, (depths.get(c.name) ?? 0) - behind);
    }
    const last = drop.seqs.at(-1) ?? 0;
    if (min !== undefined && last > min) {
      bytes = Math.max(0, bytes - drop.bytes);
      if (last > dropFloor) dropFloor = last;
    }
    if (!counted) return;
    droppedTelemetry += drop.rows;
    droppedSinceWarn += drop.rows;
    const now = clock();
    if (now - lastDropWarnAt >= WARN_INTERVAL_MS) {
      lastDropWarnAt = now;
      // SPEC §5: the oldest telemetry goes first, with a counter and a warning.
      logger.warn(
        { dropped: droppedSinceWarn, droppedTotal: droppedTelemetry, outboxBytes: bytes, outboxMaxBytes: maxBytes },
        'store: outbox over its bound; oldest undelivered telemetry dropped',
      );
      droppedSinceWarn = 0;
    }
  }

  return {
    get bytes(): number {
      return bytes;
    },
    get droppedTelemetry(): number {
      return droppedTelemetry;
    },
    depth: (name: string): number => depths.get(name) ?? 0,

    /**
     * Inside the commit transaction, after the batch's rows were inserted: deletes the oldest
     * undelivered telemetry until the outbox is back under its bound, at most `maxRows` of them
     * (a lowered bound is worked off over several batches, not in one long commit). Nothing in
     * memory changes here — the transaction may still roll back; `applyCommit` does that.
     */
    enforce(addedBytes: number, avgRowBytes: number, maxRows: number): DropResult {
      if (consumers.size === 0) return NOTHING;
      return deleteUndelivered(bytes + addedBytes - maxBytes, avgRowBytes, maxRows);
    },

    /** After a commit: the batch's rows are undelivered for everyone; its drop is counted and reported. */
    applyCommit(addedRows: number, addedBytes: number, drop: DropResult | undefined): void {
      if (consumers.size > 0) bytes += addedBytes;
      for (const [name, depth] of depths) depths.set(name, depth + addedRows);
      if (drop === undefined) return; // an alarm's commit: enforcement waits for the next batch
      applyDrop(drop, true);
      if (bytes > maxBytes) {
        const now = clock();
        if (now - lastAlarmsOnlyWarnAt >= WARN_INTERVAL_MS) {
          lastAlarmsOnlyWarnAt = now;
          logger.warn(
            { outboxBytes: bytes, outboxMaxBytes: maxBytes },
            'store: outbox over its bound with no telemetry left to drop (alarm readings are never dropped)',
          );
        }
      }
    },

    /** A consumer's cursor moved forward (already written); `oldMin` is the lowest cursor before. */
    acked(name: string, oldCursor: number, newCursor: number, oldMin: number): void {
      depths.set(name, Math.max(0, (depths.get(name) ?? 0) - readings.countBetween(oldCursor, newCursor)));
      const newMin = consumers.minCursor() ?? oldMin;
      if (newMin > oldMin) bytes = Math.max(0, bytes - readings.bytesBetween(oldMin, newMin));
    },

    consumerAdded(name: string, cursor: number, oldMin: number | undefined): void {
      depths.set(name, readings.countAfter(cursor));
      if (consumers.minCursor() !== oldMin) recomputeBytes();
    },
    consumerRemoved(name: string, oldMin: number | undefined): void {
      depths.delete(name);
      if (consumers.minCursor() !== oldMin) recomputeBytes();
    },

    /** SQLITE_FULL: frees room by deleting the oldest delivered telemetry, else undelivered telemetry. */
    makeRoom(rowsWanted: number, lastSeq: number): { delivered: DropResult; undelivered: DropResult } {
      const min = consumers.minCursor() ?? lastSeq;
      const gone = s.dropDelivered.all(min, rowsWanted);
      let freed = 0;
      for (const d of gone) freed += d.bytes;
      const delivered: DropResult = { rows: gone.length, bytes: freed, seqs: gone.map((d) => d.seq).sort((a, b) => a - b) };
      const undelivered = gone.length > 0 ? NOTHING : deleteUndelivered(Number.MAX_SAFE_INTEGER, 1, rowsWanted);
      return { delivered, undelivered };
    },
    /** After `makeRoom` committed: delivered history is not counted as dropped, undelivered is. */
    applyRoomMade(freed: { delivered: DropResult; undelivered: DropResult }): void {
      applyDrop(freed.undelivered, true);
    },
  };
}

export type Outbox = ReturnType<typeof createOutbox>;
