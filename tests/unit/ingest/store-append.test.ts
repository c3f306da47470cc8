import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isStoreError, StoreError } from '../../../ingest/store/index.js';
import { sleep, sos, telemetry, tempStore, track } from './store-helpers.js';

let t: ReturnType<typeof tempStore>;
beforeEach(() => {
  t = tempStore();
});
afterEach(async () => {
  await t.cleanup();
});

function countFromOtherConnection(path: string): number {
  const other = new Database(path, { readonly: true });
  try {
    return other.prepare('SELECT COUNT(*) FROM readings').pluck().get() as number;
  } finally {
    other.close();
  }
}

function rowsFromOtherConnection(path: string): { seq: number; device_id: string; alarm: number; json: string }[] {
  const other = new Database(path, { readonly: true });
  try {
    return other.prepare('SELECT seq, device_id, alarm, json FROM readings ORDER BY seq').all() as never;
  } finally {
    other.close();
  }
}

describe('append', () => {
  it('resolves with the seq only after commit, and the row is then visible to another connection', async () => {
    const store = t.open({ groupCommit: { maxDelayMs: 10_000 } });
    const r = telemetry({ deviceId: 'SMK-0042' });
    const pending = track(store.append(r));
    await sleep(30);
    // Not committed yet: not settled, and nothing on disk for another reader.
    expect(pending.settled).toBe(false);
    expect(rowsFromOtherConnection(t.path)).toEqual([]);

    store.flush();
    const seq = await pending.promise;
    expect(seq).toBe(1);
    const rows = rowsFromOtherConnection(t.path);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ seq: 1, device_id: 'SMK-0042', alarm: 0 });
    expect(JSON.parse(rows[0]?.json ?? '')).toEqual(r);
  });

  it('runs with WAL and synchronous=FULL', () => {
    const store = t.open();
    const s = store.stats();
    expect(s.journalMode).toBe('wal');
    expect(s.synchronous).toBe(2);
  });

  it('group commit: many appends in one window are one transaction', async () => {
    const store = t.open({ groupCommit: { maxDelayMs: 20, maxRows: 1000 } });
    const seqs = await Promise.all(Array.from({ length: 500 }, () => store.append(telemetry())));
    expect(seqs).toEqual(Array.from({ length: 500 }, (_, i) => i + 1));
    expect(store.stats()).toMatchObject({ commitBatches: 1, committedRows: 500, lastBatchRows: 500, rows: 500 });
    expect(countFromOtherConnection(t.path)).toBe(500);
  });

  it('group commit: a full batch commits at once, the rest when the window ends', async () => {
    const store = t.open({ groupCommit: { maxDelayMs: 20, maxRows: 100 } });
    const all = Array.from({ length: 450 }, () => store.append(telemetry()));
    // Four full batches went synchronously while appending; 50 wait for the window.
    expect(store.stats()).toMatchObject({ commitBatches: 4, committedRows: 400, queued: 50 });
    await Promise.all(all);
    expect(store.stats()).toMatchObject({ commitBatches: 5, committedRows: 450, queued: 0 });
  });

  it('alarm lane: an sos commits without waiting for the window, telemetry waits for it', async () => {
    const maxDelayMs = 400;
    const store = t.open({ groupCommit: { maxDelayMs, maxRows: 1000 } });

    const started = performance.now();
    const alarm = await store.append(sos());
    expect(performance.now() - started).toBeLessThan(100);
    expect(alarm).toBe(1);

    const tele = track(store.append(telemetry()));
    await sleep(100);
    expect(tele.settled).toBe(false);
    expect(await tele.promise).toBe(2);
    expect(performance.now() - started).toBeGreaterThanOrEqual(maxDelayMs - 20);
  });

  it('alarm lane: telemetry queued before an alarm rides along in its commit, in order', async () => {
    const store = t.open({ groupCommit: { maxDelayMs: 10_000 } });
    const before = [store.append(telemetry()), store.append(telemetry())];
    const alarm = await store.append(sos());
    expect(await Promise.all(before)).toEqual([1, 2]);
    expect(alarm).toBe(3);
    expect(store.stats().commitBatches).toBe(1);
    expect(rowsFromOtherConnection(t.path).map((r) => r.alarm)).toEqual([0, 0, 1]);
  });

  it('every alarm event of the catalogue takes the alarm lane', async () => {
    const store = t.open({ groupCommit: { maxDelayMs: 10_000 } });
    for (const event of ['fire_alarm', 'sos', 'fall', 'short_circuit', 'arc_fault', 'fire_call']) {
      const p = track(store.append(telemetry({ events: [event] })));
      await sleep(5);
      expect(p.settled, event).toBe(true);
    }
    const tele = track(store.append(telemetry({ events: ['battery_low'] })));
    await sleep(5);
    expect(tele.settled).toBe(false);
  });

  it('appendMany resolves every seq in order', async () => {
    const store = t.open({ groupCommit: { maxDelayMs: 1, maxRows: 64 } });
    const seqs = await store.appendMany(Array.from({ length: 200 }, () => telemetry()));
    expect(seqs).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
  });

  it('close commits what is queued; later appends reject with STORE_ERR_CLOSED', async () => {
    const store = t.open({ groupCommit: { maxDelayMs: 10_000 } });
    const queued = store.append(telemetry());
    await store.close();
    expect(await queued).toBe(1);
    await expect(store.append(telemetry())).rejects.toMatchObject({ code: 'STORE_ERR_CLOSED' });
    expect(() => store.readAfter('x', 1)).toThrow(StoreError);
    expect(countFromOtherConnection(t.path)).toBe(1);
  });

  it('totals and the last seq come back after reopen', async () => {
    const a = t.open({ groupCommit: { maxDelayMs: 0 } });
    await a.appendMany([telemetry(), sos(), telemetry()]);
    const before = a.stats();
    await a.close();
    const b = t.open();
    const after = b.stats();
    expect(after).toMatchObject({ rows: 3, bytes: before.bytes, lastSeq: 3 });
    expect(await b.append(telemetry())).toBe(4);
  });
});

describe('a commit that fails', () => {
  // A real failure: a tiny max_page_count makes SQLite return SQLITE_FULL, as a full disk would.
  // The database is filled with alarm readings, which nothing may delete to make room.
  it('rejects every promise of its batch with STORE_ERR_WRITE and stores none of it', async () => {
    const store = t.open({ maxDbBytes: 96 * 1024, groupCommit: { maxDelayMs: 10_000, maxRows: 10_000 } });
    const committed: number[] = [];
    let failure: unknown;
    let n = 0;
    while (failure === undefined && n < 2000) {
      n++;
      try {
        committed.push(await store.append(sos({ deviceId: `PGR-${n}` })));
      } catch (err) {
        failure = err;
      }
    }
    expect(isStoreError(failure, 'STORE_ERR_WRITE')).toBe(true);
    expect((failure as StoreError).cause).toMatchObject({ code: 'SQLITE_FULL' });
    expect(t.logger.at('error').length).toBeGreaterThan(0);

    // A batch of several: telemetry queued in front of an alarm. Every promise of it rejects.
    const batch = await Promise.allSettled([store.append(telemetry({ deviceId: 'SMK-LATE' })), store.append(sos({ deviceId: 'PGR-LATE' }))]);
    expect(batch.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    for (const r of batch) expect(r.status === 'rejected' && isStoreError(r.reason, 'STORE_ERR_WRITE')).toBe(true);

    const rows = rowsFromOtherConnection(t.path);
    expect(rows.map((r) => r.seq)).toEqual(committed);
    const stored = new Set(rows.map((r) => r.device_id));
    for (const id of [`PGR-${n}`, 'SMK-LATE', 'PGR-LATE']) expect(stored.has(id), id).toBe(false);
    // Memory did not run ahead of the database.
    expect(store.stats()).toMatchObject({ rows: committed.length, lastSeq: Math.max(...committed), failedBatches: 2 });
    expect(store.getDeviceState(`PGR-${n}`)).toBeUndefined();
    expect(store.getDeviceState(`PGR-${n - 1}`)?.lastSeq).toBe(Math.max(...committed));

    // The store keeps working for reads, and what it acknowledged survives a reopen.
    expect(store.queryReadings({ deviceId: 'PGR-1' })).toHaveLength(1);
    await store.close();
    const again = t.open();
    expect(again.stats()).toMatchObject({ rows: committed.length, lastSeq: Math.max(...committed) });
  });

  it('when the database is full of telemetry, deletes the oldest delivered telemetry so an sos still commits', async () => {
    const store = t.open({ maxDbBytes: 96 * 1024, groupCommit: { maxDelayMs: 0, maxRows: 50 } });
    // Fill until a telemetry batch would not fit (no consumers: all of it counts as delivered).
    for (let i = 0; i < 400; i++) {
      await store.appendMany(Array.from({ length: 50 }, () => telemetry()));
      if (store.stats().prunedForSpace > 0) break;
    }
    const pruned = store.stats().prunedForSpace;
    expect(pruned).toBeGreaterThan(0);
    const seq = await store.append(sos({ deviceId: 'PGR-LAST' }));
    expect(store.queryReadings({ deviceId: 'PGR-LAST' }).map((r) => r.seq)).toEqual([seq]);
    // The oldest went first: seq 1 is gone, the newest telemetry is kept.
    const first = rowsFromOtherConnection(t.path)[0];
    expect(first?.seq).toBeGreaterThan(1);
    expect(t.logger.at('warn').some((r) => r.msg?.includes('database full'))).toBe(true);
  });
});

describe('options', () => {
  it('are validated eagerly with a message naming the field', () => {
    expect(() => t.open({ groupCommit: { maxRows: 0 } })).toThrow(/groupCommit\.maxRows/);
    expect(() => t.open({ outboxMaxBytes: -1 })).toThrow(/outboxMaxBytes/);
    try {
      t.open({ groupCommit: { maxDelayMs: Number.NaN } });
    } catch (err) {
      expect(isStoreError(err, 'STORE_ERR_CONFIG')).toBe(true);
    }
  });
});
