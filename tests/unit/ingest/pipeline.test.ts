import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MODELS } from '../../../devices/catalogue.js';
import type { DeviceRecord } from '../../../devices/device-record.js';
import { createPipeline, type Pipeline } from '../../../ingest/pipeline/index.js';
import type { Store } from '../../../ingest/store/index.js';
import { tempStore } from './store-helpers.js';

const SMOKE: DeviceRecord = { id: 'SMK-1', model: 'smoke-json', place: { grid: '110101013001002', building: '7', room: 'B1-3' } };
const PAGER: DeviceRecord = { id: 'PGR-1', model: 'pager-json', place: { grid: '110101013001002', building: '5', room: '302' } };
const METER: DeviceRecord = { id: 'ELC-1', model: 'elec-ers1', place: { grid: '110101013001002', building: '7', room: 'B1-3' }, bus: 'rs485-1', address: 1 };

const json = (v: unknown) => Buffer.from(JSON.stringify(v));

describe('the ingest pipeline', () => {
  let t: ReturnType<typeof tempStore>;
  let store: Store;
  let pipeline: Pipeline;
  const make = () => {
    store = t.open({ groupCommit: { maxDelayMs: 1 } });
    store.registerConsumer('x', { from: 'start' });
    pipeline = createPipeline({ store, modelFor: (id) => MODELS.get(id), logger: { ...t.logger, debug: () => {} }, clock: t.clock.now });
  };
  beforeEach(() => {
    t = tempStore();
    make();
  });
  afterEach(async () => {
    await t.cleanup();
  });

  const uplink = (device: DeviceRecord, payload: Buffer, overLimit = false) =>
    pipeline.acceptMqtt({ device, payload, qos: 1, receivedAt: t.clock.now(), overLimit });

  it('stores a decoded reading at its registered place, and resolves only once it is committed', async () => {
    await uplink(SMOKE, json({ smoke: true, battery: 80 }));
    const [stored] = store.readAfter('x', 10);
    expect(stored?.reading).toMatchObject({ deviceId: 'SMK-1', kind: 'smoke', events: ['fire_alarm'], place: SMOKE.place });
    expect(pipeline.stats().accepted).toEqual({ 'smoke/smoke-json': 1 });
  });

  it('dead-letters what cannot become a reading, counts it by reason, and keeps going', async () => {
    await uplink(SMOKE, Buffer.from('{"smoke": tru'));
    await uplink(SMOKE, Buffer.from([0xff, 0xfe, 0x7b]));
    await uplink(SMOKE, json({ smoke: 'yes', battery: 80 }));
    await uplink(SMOKE, json({ smoke: false, battery: 150 }));
    await uplink({ ...SMOKE, model: 'no-such-model' }, json({ smoke: false, battery: 80 }));
    await uplink(METER, json({ smoke: false, battery: 80 })); // a serial model has no MQTT codec
    await uplink(SMOKE, json({ smoke: false, battery: 80 }));
    store.flush();
    expect(pipeline.stats().rejected).toEqual({ DEV_ERR_JSON: 1, DEV_ERR_UTF8: 1, DEV_ERR_SCHEMA: 1, DEV_ERR_RANGE: 1, ING_ERR_MODEL: 2 });
    expect(store.listDeadLetters({ limit: 10 }).map((d) => d.reason).sort()).toEqual(
      ['DEV_ERR_JSON', 'DEV_ERR_RANGE', 'DEV_ERR_SCHEMA', 'DEV_ERR_UTF8', 'ING_ERR_MODEL', 'ING_ERR_MODEL'].sort(),
    );
    expect(store.readAfter('x', 10).map((s) => s.reading.events)).toEqual([['heartbeat']]);
  });

  it('drops over-limit telemetry but never an over-limit alarm (SPEC §3)', async () => {
    await uplink(PAGER, json({ event: 'heartbeat', battery: 90 }), true);
    await uplink(PAGER, json({ event: 'sos', battery: 90 }), true);
    const events = store.readAfter('x', 10).map((s) => s.reading.events);
    expect(events).toEqual([['sos']]);
    expect(pipeline.stats().droppedOverLimit).toBe(1);
  });

  it('after a restart, the first message compares with the stored state, not with all clear (SPEC §3.3)', async () => {
    await uplink(SMOKE, json({ smoke: true, battery: 80 }));
    await store.close();
    make();
    expect(pipeline.previousState('SMK-1')).toMatchObject({ smoke: true });
    await uplink(SMOKE, json({ smoke: true, battery: 80 }));
    await uplink(SMOKE, json({ smoke: false, battery: 80 }));
    const events = store.readAfter('x', 10).map((s) => s.reading.events);
    expect(events).toEqual([['fire_alarm'], ['heartbeat'], ['fire_clear']]);
  });

  it('stores a resend of a device-stamped reading once, even across a restart (at least once, no duplicates)', async () => {
    const ts = t.clock.now() - 1_000;
    await uplink(SMOKE, json({ ts, smoke: true, battery: 80 }));
    await uplink(SMOKE, json({ ts, smoke: true, battery: 80 })); // the device never got its PUBACK
    await store.close();
    make();
    await uplink(SMOKE, json({ ts, smoke: true, battery: 80 })); // … and resends after the gateway's restart
    expect(store.readAfter('x', 10).map((s) => s.reading.events)).toEqual([['fire_alarm']]);
    expect(pipeline.stats().duplicates).toBe(1);
  });

  it('recognises a resend of an older reading after newer ones, and keeps an older reading it has not seen', async () => {
    const ts = t.clock.now() - 5_000;
    await uplink(SMOKE, json({ ts, smoke: false, battery: 80 }));
    await uplink(SMOKE, json({ ts: ts + 2_000, smoke: false, battery: 79 }));
    await store.close();
    make();
    await uplink(SMOKE, json({ ts: ts + 3_000, smoke: false, battery: 79 })); // newer than all stored: no lookup needed
    await uplink(SMOKE, json({ ts, smoke: false, battery: 80 })); // the oldest one, resent out of order
    await uplink(SMOKE, json({ ts: ts + 1_000, smoke: false, battery: 80 })); // older, but never stored: kept
    expect(store.readAfter('x', 10).map((s) => s.reading.ts)).toEqual([ts, ts + 2_000, ts + 3_000, ts + 1_000]);
    expect(pipeline.stats().duplicates).toBe(1);
  });

  it('keeps two different events at the same device time, and readings without a device time', async () => {
    const ts = t.clock.now() - 1_000;
    await uplink(PAGER, json({ ts, event: 'sos', battery: 90 }));
    await uplink(PAGER, json({ ts, event: 'fall', battery: 90 }));
    await uplink(PAGER, json({ event: 'sos', battery: 90 }));
    await uplink(PAGER, json({ event: 'sos', battery: 90 }));
    expect(store.readAfter('x', 10).map((s) => s.reading.events)).toEqual([['sos'], ['fall'], ['sos'], ['sos']]);
    expect(pipeline.stats().duplicates).toBe(0);
  });

  it('takes serial drafts on the same path', async () => {
    const draft = { deviceId: 'ELC-1', model: 'elec-ers1', kind: 'electrical' as const, ts: 1, receivedAt: 1, metrics: { voltage_v: 220 }, state: { short_circuit: true }, events: ['short_circuit'] };
    await pipeline.acceptDraft(draft, METER);
    expect(store.readAfter('x', 10)[0]?.reading).toMatchObject({ ...draft, place: METER.place });
  });

  it('keeps a reading a codec got wrong out of the store, as a dead letter', async () => {
    const bad = { deviceId: 'ELC-1', model: 'elec-ers1', kind: 'electrical' as const, ts: 1, receivedAt: 1, metrics: { battery_pct: 5 }, state: {}, events: [] };
    await pipeline.acceptDraft(bad, METER);
    store.flush();
    expect(store.readAfter('x', 10)).toEqual([]);
    expect(pipeline.stats().rejected).toEqual({ ING_ERR_INVALID_READING: 1 });
  });

  it('rejects when the store cannot commit, so the broker withholds the PUBACK', async () => {
    await store.close();
    await expect(uplink(SMOKE, json({ smoke: true, battery: 80 }))).rejects.toThrow();
  });
});
