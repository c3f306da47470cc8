import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sos, telemetry, tempStore } from './store-helpers.js';

let t: ReturnType<typeof tempStore>;
beforeEach(() => {
  t = tempStore();
});
afterEach(async () => {
  await t.cleanup();
});

const DAY = 24 * 60 * 60 * 1000;

describe('retention of the embedded history', () => {
  it('deletes only readings that are both expired and acknowledged by every consumer', async () => {
    const store = t.open({ groupCommit: { maxDelayMs: 0 } });
    const now = t.clock.now();
    store.registerConsumer('influxdb1:main', { from: 'start' });
    store.registerConsumer('uplink', { from: 'start' });
    // 1..100 are 40 days old, 101..200 one day old.
    await store.appendMany(Array.from({ length: 100 }, () => telemetry({ receivedAt: now - 40 * DAY })));
    await store.appendMany(Array.from({ length: 100 }, () => telemetry({ receivedAt: now - DAY })));
    store.ack('influxdb1:main', 200);
    store.ack('uplink', 50);

    expect(await store.pruneExpired({ retentionMs: 30 * DAY, chunkRows: 7 })).toEqual({ deleted: 50, more: false });
    expect(store.readAfter('uplink', 1)[0]?.seq).toBe(51);
    expect(store.stats().rows).toBe(150);

    store.ack('uplink', 200);
    expect(await store.pruneExpired({ retentionMs: 30 * DAY })).toEqual({ deleted: 50, more: false });
    expect(store.stats().rows).toBe(100);
    // Young rows stay however far every consumer has got.
    expect(await store.pruneExpired({ retentionMs: 30 * DAY })).toEqual({ deleted: 0, more: false });
  });

  it('works in bounded chunks, yielding to the event loop between them', async () => {
    const store = t.open({ groupCommit: { maxDelayMs: 0 } });
    const now = t.clock.now();
    await store.appendMany(Array.from({ length: 100 }, () => telemetry({ receivedAt: now - 40 * DAY })));
    const events: string[] = [];
    const prune = store.pruneExpired({ retentionMs: 30 * DAY, chunkRows: 10, maxChunks: 5 }).then((r) => {
      events.push('pruned');
      return r;
    });
    setImmediate(() => events.push('other work'));
    expect(await prune).toEqual({ deleted: 50, more: true });
    expect(events).toEqual(['other work', 'pruned']);
    expect(await store.pruneExpired({ retentionMs: 30 * DAY, chunkRows: 10 })).toEqual({ deleted: 50, more: false });
  });

  it('never reuses a seq, even when retention deleted the newest rows', async () => {
    const store = t.open({ groupCommit: { maxDelayMs: 0 } });
    const now = t.clock.now();
    store.registerConsumer('a', { from: 'start' });
    await store.appendMany(Array.from({ length: 5 }, () => telemetry({ receivedAt: now - 40 * DAY })));
    store.ack('a', 5);
    expect((await store.pruneExpired({ retentionMs: 30 * DAY })).deleted).toBe(5);
    await store.close();
    const again = t.open({ groupCommit: { maxDelayMs: 0 } });
    expect(await again.append(telemetry())).toBe(6);
    expect(again.readAfter('a', 10).map((r) => r.seq)).toEqual([6]);
  });
});

describe('queryReadings', () => {
  it('returns one device in a ts range, ascending or newest first, limited', async () => {
    const store = t.open({ groupCommit: { maxDelayMs: 0 } });
    const base = 1_733_300_000_000;
    await store.appendMany([
      ...Array.from({ length: 10 }, (_, i) => telemetry({ deviceId: 'SMK-0001', ts: base + i * 1000 })),
      ...Array.from({ length: 10 }, (_, i) => telemetry({ deviceId: 'SMK-0002', ts: base + i * 1000 })),
      sos({ deviceId: 'SMK-0001', ts: base + 4500 }),
    ]);
    const ts = (rows: { reading: { ts: number } }[]) => rows.map((r) => r.reading.ts - base);
    expect(ts(store.queryReadings({ deviceId: 'SMK-0001', from: base + 3000, to: base + 5000 }))).toEqual([3000, 4000, 4500, 5000]);
    expect(ts(store.queryReadings({ deviceId: 'SMK-0001', order: 'desc', limit: 3 }))).toEqual([9000, 8000, 7000]);
    expect(store.queryReadings({ deviceId: 'SMK-0002' })).toHaveLength(10);
    expect(store.queryReadings({ deviceId: 'NONE' })).toEqual([]);
  });

  it('uses the (device_id, ts) index', () => {
    t.open();
    const db = new Database(t.path, { readonly: true });
    try {
      const plan = db
        .prepare('EXPLAIN QUERY PLAN SELECT seq, json FROM readings WHERE device_id = ? AND ts >= ? AND ts <= ? ORDER BY ts, seq LIMIT ?')
        .all('x', 0, 1, 10) as { detail: string }[];
      expect(plan.map((p) => p.detail).join('\n')).toMatch(/USING INDEX readings_device_ts/);
      expect(plan.map((p) => p.detail).join('\n')).not.toMatch(/TEMP B-TREE/);
    } finally {
      db.close();
    }
  });
});
