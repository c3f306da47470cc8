import type Database from 'better-sqlite3';
import type { Reading } from '../../devices/reading.js';
import type { ReadingQuery, StoredReading } from './types.js';

interface Row {
  seq: number;
  json: string;
}

const QUERY_DEFAULT_LIMIT = 1000;
const QUERY_MAX_LIMIT = 10_000;
const TS_MAX = Number.MAX_SAFE_INTEGER;

/** The readings table: every statement prepared once, here. */
export function prepareReadings(db: Database.Database) {
  const s = {
    insert: db.prepare<[string, string, number, number, number, number, string]>(
      'INSERT INTO readings (device_id, kind, ts, received_at, alarm, bytes, json) VALUES (?, ?, ?, ?, ?, ?, ?)',
    ),
    after: db.prepare<[number, number], Row>('SELECT seq, json FROM readings WHERE seq > ? ORDER BY seq LIMIT ?'),
    alarmsAfter: db.prepare<[number, number], Row>('SELECT seq, json FROM readings WHERE alarm = 1 AND seq > ? ORDER BY seq LIMIT ?'),
    byDeviceAsc: db.prepare<[string, number, number, number], Row>(
      'SELECT seq, json FROM readings WHERE device_id = ? AND ts >= ? AND ts <= ? ORDER BY ts, seq LIMIT ?',
    ),
    byDeviceDesc: db.prepare<[string, number, number, number], Row>(
      'SELECT seq, json FROM readings WHERE device_id = ? AND ts >= ? AND ts <= ? ORDER BY ts DESC, seq DESC LIMIT ?',
    ),
    countAfter: db.prepare<[number], number>('SELECT COUNT(*) FROM readings WHERE seq > ?').pluck(),
    countBetween: db.prepare<[number, number], number>('SELECT COUNT(*) FROM readings WHERE seq > ? AND seq <= ?').pluck(),
    firstReceivedAfter: db.prepare<[number], number>('SELECT received_at FROM readings WHERE seq > ? ORDER BY seq LIMIT 1').pluck(),
    bytesBetween: db.prepare<[number, number], number>('SELECT TOTAL(bytes) FROM readings WHERE seq > ? AND seq <= ?').pluck(),
    totals: db.prepare<[], { rows: number; bytes: number }>('SELECT COUNT(*) AS rows, TOTAL(bytes) AS bytes FROM readings'),
    lastSeq: db.prepare<[], number>("SELECT seq FROM sqlite_sequence WHERE name = 'readings'").pluck(),
  };

  return {
    /** Inserts one reading (inside the caller's transaction); returns its seq and JSON bytes. */
    insert(reading: Reading, alarm: boolean): { seq: number; bytes: number } {
      const json = JSON.stringify(reading);
      const bytes = Buffer.byteLength(json, 'utf8');
      const info = s.insert.run(reading.deviceId, reading.kind, reading.ts, reading.receivedAt, alarm ? 1 : 0, bytes, json);
      return { seq: Number(info.lastInsertRowid), bytes };
    },
    after(seq: number, limit: number): StoredReading[] {
      return decode(s.after.all(seq, limit));
    },
    alarmsAfter(seq: number, limit: number): StoredReading[] {
      return decode(s.alarmsAfter.all(seq, limit));
    },
    query(q: ReadingQuery): StoredReading[] {
      const limit = Math.min(Math.max(1, Math.floor(q.limit ?? QUERY_DEFAULT_LIMIT)), QUERY_MAX_LIMIT);
      const stmt = q.order === 'desc' ? s.byDeviceDesc : s.byDeviceAsc;
      return decode(stmt.all(q.deviceId, q.from ?? 0, q.to ?? TS_MAX, limit));
    },
    countAfter: (seq: number): number => s.countAfter.get(seq) ?? 0,
    countBetween: (lo: number, hi: number): number => s.countBetween.get(lo, hi) ?? 0,
    firstReceivedAfter: (seq: number): number | undefined => s.firstReceivedAfter.get(seq),
    bytesBetween: (lo: number, hi: number): number => s.bytesBetween.get(lo, hi) ?? 0,
    totals: (): { rows: number; bytes: number } => s.totals.get() ?? { rows: 0, bytes: 0 },
    /** The highest seq ever assigned, even when that row has since been deleted. */
    lastSeq: (): number => s.lastSeq.get() ?? 0,
  };
}

export type ReadingsTable = ReturnType<typeof prepareReadings>;

function decode(rows: Row[]): StoredReading[] {
  // Between internal stages the types are trusted (STYLE.md): what we wrote is a Reading.
  return rows.map((r) => ({ seq: r.seq, reading: JSON.parse(r.json) as Reading }));
}
