import type Database from 'better-sqlite3';
import type { DeadLetter, DeadLetterInput } from './types.js';

const DETAIL_MAX_CHARS = 1024;

interface Row {
  id: number;
  at: number;
  source: string;
  device_id: string | null;
  reason: string;
  detail: string;
  payload: Buffer | null;
  payload_bytes: number;
}

/** A stamped dead letter, ready for the next group commit. */
export interface DeadLetterRecord extends DeadLetterInput {
  readonly at: number;
}

/**
 * Rejected input kept for the operator (SPEC §3): bounded to the newest `max` rows, with counts
 * by reason that outlive the trimming. Written through the group commit, so a flood of garbage
 * costs one fsync per batch, not one per message.
 */
export function prepareDeadLetters(db: Database.Database, opts: { max: number; payloadMaxBytes: number }) {
  const s = {
    insert: db.prepare<[number, string, string | null, string, string, Buffer | null, number]>(
      'INSERT INTO dead_letters (at, source, device_id, reason, detail, payload, payload_bytes) VALUES (?, ?, ?, ?, ?, ?, ?)',
    ),
    count: db.prepare<[string]>(
      'INSERT INTO dead_letter_counts (reason, count) VALUES (?, 1) ON CONFLICT (reason) DO UPDATE SET count = count + 1',
    ),
    // Ids are AUTOINCREMENT and only rolled-back inserts leave gaps, so "the newest max" is an id range.
    trim: db.prepare<[number]>('DELETE FROM dead_letters WHERE id <= ?'),
    list: db.prepare<[number, number], Row>('SELECT * FROM dead_letters WHERE id < ? ORDER BY id DESC LIMIT ?'),
    rows: db.prepare<[], number>('SELECT COUNT(*) FROM dead_letters').pluck(),
    counts: db.prepare<[], { reason: string; count: number }>('SELECT reason, count FROM dead_letter_counts ORDER BY reason'),
  };

  return {
    /** Inside the commit transaction. Returns the new row's id. */
    insert(d: DeadLetterRecord): number {
      const payload = d.payload ? d.payload.subarray(0, opts.payloadMaxBytes) : null;
      const info = s.insert.run(
        d.at,
        d.source,
        d.deviceId ?? null,
        d.reason,
        d.detail.length > DETAIL_MAX_CHARS ? `${d.detail.slice(0, DETAIL_MAX_CHARS)}…` : d.detail,
        payload,
        d.payload?.length ?? 0,
      );
      s.count.run(d.reason);
      return Number(info.lastInsertRowid);
    },
    /** Inside the commit transaction, after the batch's inserts. */
    trim(newestId: number): void {
      if (newestId > opts.max) s.trim.run(newestId - opts.max);
    },
    /** Newest first; `before` (an id) pages back. */
    list(limit: number, before?: number): DeadLetter[] {
      const n = Math.min(Math.max(1, Math.floor(limit)), opts.max);
      return s.list.all(before ?? Number.MAX_SAFE_INTEGER, n).map(fromRow);
    },
    rows: (): number => s.rows.get() ?? 0,
    counts(): Record<string, number> {
      return Object.fromEntries(s.counts.all().map((r) => [r.reason, r.count]));
    },
  };
}

function fromRow(r: Row): DeadLetter {
  return {
    id: r.id,
    at: r.at,
    source: r.source,
    deviceId: r.device_id ?? undefined,
    reason: r.reason,
    detail: r.detail,
    payload: r.payload ?? undefined,
    payloadBytes: r.payload_bytes,
  };
}

export type DeadLettersTable = ReturnType<typeof prepareDeadLetters>;
