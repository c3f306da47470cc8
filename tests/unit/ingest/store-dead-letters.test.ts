import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { tempStore } from './store-helpers.js';

let t: ReturnType<typeof tempStore>;
beforeEach(() => {
  t = tempStore();
});
afterEach(async () => {
  await t.cleanup();
});

describe('dead letters', () => {
  it('keeps the newest N and counts every one by reason, across a reopen', async () => {
    const a = t.open({ deadLetterMax: 5, groupCommit: { maxDelayMs: 0 } });
    for (let i = 0; i < 12; i++) {
      a.deadLetter({ source: 'mqtt', deviceId: `SMK-${i}`, reason: i % 3 === 0 ? 'DEV_ERR_JSON' : 'DEV_ERR_SCHEMA', detail: `#${i}` });
      t.clock.advance(1000);
    }
    a.flush();
    const list = a.listDeadLetters({ limit: 100 });
    expect(list.map((d) => d.detail)).toEqual(['#11', '#10', '#9', '#8', '#7']);
    expect(list[0]).toMatchObject({ source: 'mqtt', deviceId: 'SMK-11', reason: 'DEV_ERR_SCHEMA', at: t.clock.now() - 1000 });
    expect(a.deadLetterCounts()).toEqual({ DEV_ERR_JSON: 4, DEV_ERR_SCHEMA: 8 });
    expect(a.stats()).toMatchObject({ deadLetters: 5, deadLettersByReason: { DEV_ERR_JSON: 4, DEV_ERR_SCHEMA: 8 } });
    await a.close();

    const b = t.open({ deadLetterMax: 5 });
    expect(b.deadLetterCounts()).toEqual({ DEV_ERR_JSON: 4, DEV_ERR_SCHEMA: 8 });
    const page = b.listDeadLetters({ limit: 2 });
    expect(page.map((d) => d.detail)).toEqual(['#11', '#10']);
    expect(b.listDeadLetters({ limit: 2, before: page[1]?.id }).map((d) => d.detail)).toEqual(['#9', '#8']);
  });

  it('keeps a payload up to the limit, its full length, and no device id when there is none', () => {
    const store = t.open({ deadLetterPayloadMaxBytes: 16, groupCommit: { maxDelayMs: 0 } });
    const payload = Buffer.alloc(20_000, 0xab);
    store.deadLetter({ source: 'serial', reason: 'DEV_ERR_TOO_LARGE', detail: 'x'.repeat(5000), payload });
    store.deadLetter({ source: 'sink:influxdb1:main', reason: 'SINK_ERR_REJECTED', detail: 'partial write' });
    store.flush();
    const [sink, serial] = store.listDeadLetters();
    expect(serial?.payload).toEqual(payload.subarray(0, 16));
    expect(serial?.payloadBytes).toBe(20_000);
    expect(serial?.deviceId).toBeUndefined();
    expect(serial?.detail.length).toBeLessThan(1100);
    expect(sink).toMatchObject({ source: 'sink:influxdb1:main', payload: undefined, payloadBytes: 0 });
  });

  it('ride the group commit: a flood of garbage costs one transaction per batch', async () => {
    const store = t.open({ groupCommit: { maxDelayMs: 10, maxRows: 1000 } });
    for (let i = 0; i < 300; i++) store.deadLetter({ source: 'mqtt', reason: 'DEV_ERR_UTF8', detail: 'bad bytes' });
    expect(store.stats().queued).toBe(300);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(store.stats()).toMatchObject({ commitBatches: 1, deadLetters: 300, queued: 0 });
  });

  it('after close, a dead letter is logged, not thrown', async () => {
    const store = t.open();
    await store.close();
    expect(() => store.deadLetter({ source: 'mqtt', reason: 'DEV_ERR_JSON', detail: '' })).not.toThrow();
    expect(t.logger.at('warn')).toHaveLength(1);
  });
});
