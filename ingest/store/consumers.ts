import type Database from 'better-sqlite3';
import { StoreError } from './errors.js';
import type { ConsumerInfo } from './types.js';

interface Row {
  name: string;
  cursor: number;
  alarm_cursor: number;
}

/**
 * Durable per-consumer cursors (DESIGN.md: sinks and the uplink read the store by cursor). The
 * table is the truth; the map is its cache, changed only after the write succeeded.
 */
export function prepareConsumers(db: Database.Database, clock: () => number) {
  const s = {
    all: db.prepare<[], Row>('SELECT name, cursor, alarm_cursor FROM consumers ORDER BY name'),
    insert: db.prepare<[string, number, number, number]>(
      'INSERT INTO consumers (name, cursor, alarm_cursor, created_at, updated_at) VALUES (?, ?, 0, ?, ?)',
    ),
    setCursor: db.prepare<[number, number, string]>('UPDATE consumers SET cursor = ?, updated_at = ? WHERE name = ?'),
    setAlarmCursor: db.prepare<[number, number, string]>('UPDATE consumers SET alarm_cursor = ?, updated_at = ? WHERE name = ?'),
    remove: db.prepare<[string]>('DELETE FROM consumers WHERE name = ?'),
  };
  const cache = new Map<string, ConsumerInfo>(
    s.all.all().map((r) => [r.name, { name: r.name, cursor: r.cursor, alarmCursor: r.alarm_cursor }]),
  );

  function get(name: string): ConsumerInfo {
    const c = cache.get(name);
    if (!c) throw new StoreError('STORE_ERR_UNKNOWN_CONSUMER', name);
    return c;
  }

  return {
    get,
    has: (name: string): boolean => cache.has(name),
    list: (): ConsumerInfo[] => [...cache.values()],
    get size(): number {
      return cache.size;
    },
    /** The lowest cursor, or undefined when nobody consumes (then nothing is undelivered). */
    minCursor(): number | undefined {
      let min: number | undefined;
      for (const c of cache.values()) if (min === undefined || c.cursor < min) min = c.cursor;
      return min;
    },
    insert(name: string, cursor: number): ConsumerInfo {
      const now = clock();
      s.insert.run(name, cursor, now, now);
      const info = { name, cursor, alarmCursor: 0 };
      cache.set(name, info);
      return info;
    },
    setCursor(name: string, cursor: number): void {
      const c = get(name);
      s.setCursor.run(cursor, clock(), name);
      cache.set(name, { ...c, cursor });
    },
    setAlarmCursor(name: string, alarmCursor: number): void {
      const c = get(name);
      s.setAlarmCursor.run(alarmCursor, clock(), name);
      cache.set(name, { ...c, alarmCursor });
    },
    remove(name: string): boolean {
      const removed = s.remove.run(name).changes > 0;
      cache.delete(name);
      return removed;
    },
  };
}

export type ConsumersTable = ReturnType<typeof prepareConsumers>;
