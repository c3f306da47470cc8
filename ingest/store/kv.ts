import type Database from 'better-sqlite3';

/**
 * A small durable JSON map for other modules' state (rule windows, `for` timers, escalation
 * deadlines: DESIGN.md). Each call is its own transaction unless made inside `store.transaction`.
 */
export function prepareKv(db: Database.Database, clock: () => number) {
  const s = {
    get: db.prepare<[string], string>('SELECT value FROM kv WHERE key = ?').pluck(),
    set: db.prepare<[string, string, number]>(
      'INSERT INTO kv (key, value, updated_at) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at',
    ),
    remove: db.prepare<[string]>('DELETE FROM kv WHERE key = ?'),
    keys: db.prepare<[string, string], string>('SELECT key FROM kv WHERE key >= ? AND key < ? ORDER BY key').pluck(),
  };
  return {
    get<T = unknown>(key: string): T | undefined {
      const raw = s.get.get(key);
      return raw === undefined ? undefined : (JSON.parse(raw) as T);
    },
    set(key: string, value: unknown): void {
      const json = JSON.stringify(value);
      // JSON.stringify(undefined) is undefined: refuse it rather than store something unreadable.
      if (json === undefined) throw new TypeError(`setJson(${key}): value is not JSON-serialisable`);
      s.set.run(key, json, clock());
    },
    remove: (key: string): boolean => s.remove.run(key).changes > 0,
    /** Keys starting with `prefix`, e.g. `rules:` — a module's own namespace. */
    keys: (prefix: string): string[] => s.keys.all(prefix, `${prefix}\u{10FFFF}`),
  };
}
