import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MIGRATIONS, SCHEMA_VERSION, migrate } from '../../../ingest/store/schema.js';
import { isStoreError } from '../../../ingest/store/index.js';
import { sos, telemetry, tempStore, track } from './store-helpers.js';

let t: ReturnType<typeof tempStore>;
beforeEach(() => {
  t = tempStore();
});
afterEach(async () => {
  await t.cleanup();
});

describe('device state', () => {
  it('is written with the reading, merged over readings, and survives a reopen', async () => {
    const a = t.open({ groupCommit: { maxDelayMs: 0 } });
    expect(a.getDeviceState('SMK-0007')).toBeUndefined();
    await a.append(telemetry({ deviceId: 'SMK-0007', receivedAt: 1000, ts: 990, metrics: { battery_pct: 90, rssi_dbm: -70 }, state: { smoke: false, tamper: false } }));
    // Same batch: the second reading folds over the first.
    const [, last] = await a.appendMany([
      telemetry({ deviceId: 'SMK-0007', receivedAt: 2000, ts: 1990, metrics: { battery_pct: 80 }, state: { smoke: true }, events: ['heartbeat'] }),
      telemetry({ deviceId: 'SMK-0007', receivedAt: 3000, ts: 2990, metrics: {}, state: { tamper: true }, events: ['heartbeat'] }),
    ]);
    const expected = {
      deviceId: 'SMK-0007',
      kind: 'smoke',
      model: 'smoke-json',
      state: { smoke: true, tamper: true },
      metrics: { battery_pct: 80, rssi_dbm: -70 },
      lastSeen: 3000,
      lastTs: 2990,
      lastSeq: last,
    };
    expect(a.getDeviceState('SMK-0007')).toEqual(expected);
    await a.append(sos({ deviceId: 'PGR-1' }));
    await a.close();

    const b = t.open();
    expect(b.getDeviceState('SMK-0007')).toEqual(expected);
    expect(b.loadDeviceStates().map((d) => d.deviceId).sort()).toEqual(['PGR-1', 'SMK-0007']);
  });

  it('is not visible before the reading that changed it has committed', async () => {
    const store = t.open({ groupCommit: { maxDelayMs: 10_000 } });
    const p = store.append(telemetry({ deviceId: 'SMK-0009' }));
    expect(store.getDeviceState('SMK-0009')).toBeUndefined();
    store.flush();
    await p;
    expect(store.getDeviceState('SMK-0009')?.lastSeq).toBe(await p);
  });
});

describe('key-value JSON', () => {
  it('gets, sets, deletes and lists by prefix, durably', async () => {
    const a = t.open();
    expect(a.getJson('rules:window:fire.confirmed')).toBeUndefined();
    a.setJson('rules:window:fire.confirmed', { since: 1, count: 2 });
    a.setJson('rules:timer:leak', [1, 2, 3]);
    a.setJson('escalation:INC-1', { level: 1 });
    expect(a.jsonKeys('rules:')).toEqual(['rules:timer:leak', 'rules:window:fire.confirmed']);
    expect(a.deleteJson('rules:timer:leak')).toBe(true);
    expect(a.deleteJson('rules:timer:leak')).toBe(false);
    expect(() => a.setJson('bad', undefined)).toThrow(TypeError);
    await a.close();
    const b = t.open();
    expect(b.getJson<{ since: number; count: number }>('rules:window:fire.confirmed')).toEqual({ since: 1, count: 2 });
    expect(b.getJson('escalation:INC-1')).toEqual({ level: 1 });
  });

  it('several writes in one transaction land together or not at all', () => {
    const store = t.open();
    store.transaction(() => {
      store.setJson('a', 1);
      store.setJson('b', 2);
    });
    expect(() =>
      store.transaction(() => {
        store.setJson('a', 10);
        throw new Error('abort');
      }),
    ).toThrow('abort');
    expect([store.getJson('a'), store.getJson('b')]).toEqual([1, 2]);
  });

  it('an alarm appended inside a transaction is committed right after it, not inside it', async () => {
    const store = t.open({ groupCommit: { maxDelayMs: 10_000 } });
    let p: ReturnType<typeof track<number>> | undefined;
    expect(() =>
      store.transaction(() => {
        p = track(store.append(sos()));
        throw new Error('rolled back');
      }),
    ).toThrow('rolled back');
    expect(p?.settled).toBe(false);
    expect(await p?.promise).toBe(1);
    expect(store.queryReadings({ deviceId: 'PGR-0302' })).toHaveLength(1);
  });
});

describe('schema', () => {
  it('migrations are numbered 1..n and the file records the version', () => {
    expect(MIGRATIONS.map((m) => m.version)).toEqual(Array.from({ length: SCHEMA_VERSION }, (_, i) => i + 1));
    t.open();
    const db = new Database(t.path, { readonly: true });
    try {
      expect(db.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
      expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    } finally {
      db.close();
    }
  });

  it('migrating twice is a no-op; a newer schema is refused instead of guessed at', async () => {
    const store = t.open();
    await store.close();
    const db = new Database(t.path);
    expect(migrate(db)).toEqual({ from: SCHEMA_VERSION, to: SCHEMA_VERSION });
    db.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
    db.close();
    let error: unknown;
    try {
      t.open();
    } catch (err) {
      error = err;
    }
    expect(isStoreError(error, 'STORE_ERR_SCHEMA')).toBe(true);
  });

  it('a file that is not a database is STORE_ERR_OPEN, naming the path', () => {
    mkdirSync(dirname(t.path), { recursive: true });
    writeFileSync(t.path, 'this is not sqlite, just some text that is long enough to be a header....'.repeat(10));
    expect(() => t.open()).toThrow(expect.objectContaining({ code: 'STORE_ERR_OPEN', message: expect.stringContaining(t.path) as unknown }));
  });
});
