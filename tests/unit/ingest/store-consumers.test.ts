import Database from 'better-sqlite3';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isStoreError, type Store } from '../../../ingest/store/index.js';
import { sos, telemetry, tempStore } from './store-helpers.js';

let t: ReturnType<typeof tempStore>;
beforeEach(() => {
  t = tempStore();
});
afterEach(async () => {
  await t.cleanup();
});

const seqs = (rows: { seq: number }[]): number[] => rows.map((r) => r.seq);

describe('consumers by cursor', () => {
  it('read in seq order after the cursor; the cursor survives close and reopen', async () => {
    const a = t.open({ groupCommit: { maxDelayMs: 0 } });
    a.registerConsumer('influxdb1:main', { from: 'start' });
    await a.appendMany(Array.from({ length: 10 }, () => telemetry()));
    expect(seqs(a.readAfter('influxdb1:main', 4))).toEqual([1, 2, 3, 4]);
    a.ack('influxdb1:main', 4);
    expect(a.depth('influxdb1:main')).toBe(6);
    await a.close();

    const b = t.open();
    // Registering again is a no-op: the consumer resumes where it was.
    expect(b.registerConsumer('influxdb1:main', { from: 'start' }).cursor).toBe(4);
    expect(seqs(b.readAfter('influxdb1:main', 100))).toEqual([5, 6, 7, 8, 9, 10]);
    expect(b.readAfter('influxdb1:main', 2)[0]?.reading.deviceId).toBe('SMK-0001');
    // Pipelining: read past what was sent without acking it yet.
    expect(seqs(b.readAfter('influxdb1:main', 2, 8))).toEqual([9, 10]);
  });

  it('a new consumer starts at the end by default, or at the start when asked', async () => {
    const store = t.open({ groupCommit: { maxDelayMs: 0 } });
    await store.appendMany([telemetry(), telemetry(), telemetry()]);
    expect(store.registerConsumer('influxdb2:cloud').cursor).toBe(3);
    expect(store.readAfter('influxdb2:cloud', 10)).toEqual([]);
    expect(store.registerConsumer('uplink', { from: 'start' }).cursor).toBe(0);
    expect(store.depth('uplink')).toBe(3);
    const seq = await store.append(telemetry());
    expect(seqs(store.readAfter('influxdb2:cloud', 10))).toEqual([seq]);
  });

  it('two consumers are independent', async () => {
    const store = t.open({ groupCommit: { maxDelayMs: 0 } });
    store.registerConsumer('a', { from: 'start' });
    store.registerConsumer('b', { from: 'start' });
    await store.appendMany(Array.from({ length: 5 }, () => telemetry()));
    store.ack('a', 5);
    expect(store.depth('a')).toBe(0);
    expect(store.depth('b')).toBe(5);
    expect(seqs(store.readAfter('b', 10))).toEqual([1, 2, 3, 4, 5]);
    store.ack('b', 2);
    expect(store.stats().pending).toEqual({ a: 0, b: 3 });
    expect(store.listConsumers().map((c) => [c.name, c.cursor])).toEqual([
      ['a', 5],
      ['b', 2],
    ]);
  });

  it('ack never moves back, refuses a seq never committed, and unknown consumers are errors', async () => {
    const store = t.open({ groupCommit: { maxDelayMs: 0 } });
    store.registerConsumer('a', { from: 'start' });
    await store.appendMany([telemetry(), telemetry()]);
    store.ack('a', 2);
    store.ack('a', 1);
    expect(store.listConsumers()[0]?.cursor).toBe(2);
    expect(() => store.ack('a', 3)).toThrow(expect.objectContaining({ code: 'STORE_ERR_CURSOR' }));
    expect(() => store.readAfter('nobody', 1)).toThrow(expect.objectContaining({ code: 'STORE_ERR_UNKNOWN_CONSUMER' }));
    expect(() => store.ack('nobody', 1)).toThrow(expect.objectContaining({ code: 'STORE_ERR_UNKNOWN_CONSUMER' }));
  });

  it('oldestUnsentAge is measured on the injected clock from receivedAt', async () => {
    const store = t.open({ groupCommit: { maxDelayMs: 0 } });
    store.registerConsumer('a');
    expect(store.oldestUnsentAge('a')).toBeUndefined();
    const now = t.clock.now();
    await store.appendMany([telemetry({ receivedAt: now - 5000 }), telemetry({ receivedAt: now - 1000 })]);
    expect(store.oldestUnsentAge('a')).toBe(5000);
    store.ack('a', 1);
    t.clock.advance(500);
    expect(store.oldestUnsentAge('a')).toBe(1500);
  });

  it('priority lane: undelivered alarms are read ahead of the telemetry backlog', async () => {
    const store = t.open({ groupCommit: { maxDelayMs: 0 } });
    store.registerConsumer('uplink', { from: 'start' });
    await store.appendMany(Array.from({ length: 50 }, () => telemetry()));
    const alarmSeq = await store.append(sos());
    await store.appendMany(Array.from({ length: 10 }, () => telemetry()));
    expect(seqs(store.readAlarmsAfter('uplink', 10))).toEqual([alarmSeq]);
    store.ackAlarms('uplink', alarmSeq);
    expect(store.readAlarmsAfter('uplink', 10)).toEqual([]);
    // At least once: the cursor still walks over it in order.
    expect(seqs(store.readAfter('uplink', 100))).toContain(alarmSeq);
    await store.close();
    const again = t.open();
    expect(again.readAlarmsAfter('uplink', 10)).toEqual([]);
    expect(again.listConsumers()[0]?.alarmCursor).toBe(alarmSeq);
  });

  it('commit listeners see each committed batch; a throwing one is logged and does not stop the others', async () => {
    const store = t.open({ groupCommit: { maxDelayMs: 0 } });
    const seen: number[][] = [];
    store.onCommit(() => {
      throw new Error('boom');
    }, 'broken');
    const off = store.onCommit((batch) => seen.push(seqs([...batch])), 'rules');
    await store.appendMany([telemetry(), telemetry()]);
    store.deadLetter({ source: 'mqtt', reason: 'DEV_ERR_JSON', detail: 'x' });
    store.flush();
    off();
    await store.append(telemetry());
    expect(seen).toEqual([[1, 2]]);
    expect(t.logger.at('error').filter((r) => (r.obj as { listener?: string }).listener === 'broken')).toHaveLength(2);
  });
});

describe('bounded outbox (SPEC §5)', () => {
  const bound = 20_000;

  function undelivered(path: string, after: number): { seq: number; alarm: number; bytes: number }[] {
    const db = new Database(path, { readonly: true });
    try {
      return db.prepare('SELECT seq, alarm, bytes FROM readings WHERE seq > ? ORDER BY seq').all(after) as never;
    } finally {
      db.close();
    }
  }

  it('drops the oldest undelivered telemetry first, counts it, warns once a minute, and keeps the sos', async () => {
    const store = t.open({ outboxMaxBytes: bound, groupCommit: { maxDelayMs: 0, maxRows: 20 } });
    store.registerConsumer('influxdb1:main', { from: 'start' });
    // The sink is down: nothing is acked. ~300 bytes a reading, so ~66 fit.
    const early = await store.append(sos({ deviceId: 'PGR-EARLY' }));
    for (let i = 0; i < 10; i++) await store.appendMany(Array.from({ length: 20 }, () => telemetry()));
    const late = await store.append(sos({ deviceId: 'PGR-LATE' }));

    const s = store.stats();
    expect(s.droppedTelemetry).toBeGreaterThan(100);
    expect(s.outboxBytes).toBeLessThanOrEqual(bound);
    const rows = undelivered(t.path, 0);
    expect(rows.reduce((sum, r) => sum + r.bytes, 0)).toBe(s.outboxBytes);
    expect(rows.length).toBe(s.rows);
    // Both alarms are kept; the telemetry that is left is the newest, without holes.
    expect(rows.filter((r) => r.alarm === 1).map((r) => r.seq)).toEqual([early, late]);
    const kept = rows.filter((r) => r.alarm === 0).map((r) => r.seq);
    expect(kept.at(-1)).toBe(late - 1);
    expect(kept).toEqual(Array.from({ length: kept.length }, (_, i) => (kept[0] ?? 0) + i));
    expect(s.droppedTelemetry).toBe(late - 2 - kept.length);

    // Many drops within a minute: one warning. A minute later: the next one, with the count since.
    const warnings = () => t.logger.at('warn').filter((r) => r.msg?.includes('oldest undelivered telemetry dropped'));
    expect(warnings()).toHaveLength(1);
    t.clock.advance(60_000);
    await store.appendMany(Array.from({ length: 20 }, () => telemetry()));
    expect(warnings()).toHaveLength(2);
    // The second warning carries everything dropped since the first: nothing goes unreported.
    const reported = warnings().reduce((sum, w) => sum + (w.obj as { dropped: number }).dropped, 0);
    expect(reported).toBe(store.stats().droppedTelemetry);
    expect(warnings()[1]?.obj).toMatchObject({ droppedTotal: store.stats().droppedTelemetry });
  });

  it('never drops alarm readings, even over the bound', async () => {
    const store = t.open({ outboxMaxBytes: 5000, groupCommit: { maxDelayMs: 0 } });
    store.registerConsumer('uplink', { from: 'start' });
    const alarms: number[] = [];
    for (let i = 0; i < 40; i++) alarms.push(await store.append(sos({ deviceId: `PGR-${i}` })));
    await store.appendMany([telemetry(), telemetry()]);
    const s = store.stats();
    expect(s.outboxBytes).toBeGreaterThan(5000);
    expect(seqs(store.readAlarmsAfter('uplink', 100))).toEqual(alarms);
    expect(s.droppedTelemetry).toBe(2);
    expect(t.logger.at('warn').some((r) => r.msg?.includes('alarm readings are never dropped'))).toBe(true);
  });

  it('acknowledged readings leave the outbox; with no consumer nothing is undelivered', async () => {
    const store = t.open({ groupCommit: { maxDelayMs: 0 } });
    await store.appendMany([telemetry(), telemetry()]);
    expect(store.stats().outboxBytes).toBe(0);
    store.registerConsumer('a', { from: 'start' });
    store.registerConsumer('b', { from: 'start' });
    const total = store.stats().bytes;
    expect(store.stats().outboxBytes).toBe(total);
    store.ack('a', 2);
    expect(store.stats().outboxBytes).toBe(total);
    store.ack('b', 1);
    expect(store.stats().outboxBytes).toBeLessThan(total);
    expect(store.removeConsumer('b')).toBe(true);
    expect(store.stats().outboxBytes).toBe(0);
  });

  it('property: the running total always equals a scan, alarms are never lost, and memory matches disk', async () => {
    type Op =
      | { op: 'tele'; n: number }
      | { op: 'alarm' }
      | { op: 'ack'; who: 0 | 1; frac: number }
      | { op: 'register'; who: 0 | 1; fromStart: boolean }
      | { op: 'remove'; who: 0 | 1 }
      | { op: 'reopen' };
    const opArb: fc.Arbitrary<Op> = fc.oneof(
      { weight: 4, arbitrary: fc.record({ op: fc.constant('tele' as const), n: fc.oneof(fc.constant(1), fc.integer({ min: 1, max: 30 })) }) },
      { weight: 2, arbitrary: fc.record({ op: fc.constant('alarm' as const) }) },
      { weight: 3, arbitrary: fc.record({ op: fc.constant('ack' as const), who: fc.constantFrom(0 as const, 1 as const), frac: fc.double({ min: 0, max: 1, noNaN: true }) }) },
      { weight: 1, arbitrary: fc.record({ op: fc.constant('register' as const), who: fc.constantFrom(0 as const, 1 as const), fromStart: fc.boolean() }) },
      { weight: 1, arbitrary: fc.record({ op: fc.constant('remove' as const), who: fc.constantFrom(0 as const, 1 as const) }) },
      { weight: 1, arbitrary: fc.record({ op: fc.constant('reopen' as const) }) },
    );
    const names = ['sink-a', 'sink-b'] as const;
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 25 }), async (ops) => {
        run++;
        const local = tempStore();
        const open = (): Store => local.open({ outboxMaxBytes: 6000, groupCommit: { maxDelayMs: 0, maxRows: 1000 } });
        let store = open();
        const alarms: number[] = [];
        try {
          for (const o of ops) {
            if (o.op === 'tele') await store.appendMany(Array.from({ length: o.n }, () => telemetry()));
            else if (o.op === 'alarm') alarms.push(await store.append(sos()));
            else if (o.op === 'register') store.registerConsumer(names[o.who], { from: o.fromStart ? 'start' : 'end' });
            else if (o.op === 'remove') store.removeConsumer(names[o.who]);
            else if (o.op === 'reopen') {
              await store.close();
              store = open();
            } else {
              const c = store.listConsumers().find((x) => x.name === names[o.who]);
              if (c) store.ack(c.name, c.cursor + Math.floor((store.stats().lastSeq - c.cursor) * o.frac));
            }
            const s = store.stats();
            const consumers = store.listConsumers();
            const min = consumers.length ? Math.min(...consumers.map((c) => c.cursor)) : s.lastSeq;
            const db = new Database(local.path, { readonly: true });
            try {
              const scan = db.prepare('SELECT TOTAL(bytes) FROM readings WHERE seq > ?').pluck().get(min) as number;
              const all = db.prepare('SELECT COUNT(*) AS rows, TOTAL(bytes) AS bytes FROM readings').get() as { rows: number; bytes: number };
              const alarmSeqs = db.prepare('SELECT seq FROM readings WHERE alarm = 1 ORDER BY seq').pluck().all() as number[];
              expect(s.outboxBytes).toBe(scan);
              expect({ rows: s.rows, bytes: s.bytes }).toEqual(all);
              expect(alarmSeqs).toEqual(alarms);
              const count = db.prepare('SELECT COUNT(*) FROM readings WHERE seq > ?').pluck();
              for (const c of consumers) expect(store.depth(c.name), c.name).toBe(count.get(c.cursor));
              expect(s.pending).toEqual(Object.fromEntries(consumers.map((c) => [c.name, count.get(c.cursor)])));
            } finally {
              db.close();
            }
          }
        } finally {
          await local.cleanup();
        }
      }),
      { numRuns: 60 },
    );
    expect(run).toBeGreaterThanOrEqual(60);
  });

  it('rejects an ack inside a caller transaction (its rollback would leave memory ahead of disk)', async () => {
    const store = t.open({ groupCommit: { maxDelayMs: 0 } });
    store.registerConsumer('a', { from: 'start' });
    await store.append(telemetry());
    expect(() => store.transaction(() => store.ack('a', 1))).toThrow(TypeError);
    expect(isStoreError(new Error('x'))).toBe(false);
  });
});
