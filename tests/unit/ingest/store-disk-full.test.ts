import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MODELS } from '../../../devices/catalogue.js';
import type { DeviceRecord } from '../../../devices/device-record.js';
import { createPipeline } from '../../../ingest/pipeline/index.js';
import { isStoreError } from '../../../ingest/store/index.js';
import { sos, telemetry, tempStore } from './store-helpers.js';

/**
 * The store's side of disk-full mode (SPEC-NOTES "Disk full"): refusing telemetry while alarms
 * are stored, and the `onFull` hook a SQLITE_FULL commit calls before it gives up. The real disk
 * (tmpfs, reserve file) is in tests/integration/faults/disk-full.test.ts.
 */

let t: ReturnType<typeof tempStore>;
beforeEach(() => {
  t = tempStore();
});
afterEach(async () => {
  await t.cleanup();
});

function deviceIds(path: string): string[] {
  const db = new Database(path, { readonly: true });
  try {
    return db.prepare<[], { device_id: string }>('SELECT device_id FROM readings ORDER BY seq').all().map((r) => r.device_id);
  } finally {
    db.close();
  }
}

describe('refuseTelemetry', () => {
  it('refuses telemetry with STORE_ERR_FULL, stores alarms, keeps no dead letters, and resumes', async () => {
    const store = t.open({ groupCommit: { maxDelayMs: 0, maxRows: 100 } });
    await store.append(telemetry({ deviceId: 'SMK-BEFORE' }));
    store.refuseTelemetry(true);

    const refused = await Promise.allSettled([store.append(telemetry({ deviceId: 'SMK-REFUSED' })), store.appendMany([telemetry({ deviceId: 'SMK-MANY' })])]);
    for (const r of refused) expect(r.status === 'rejected' && isStoreError(r.reason, 'STORE_ERR_FULL')).toBe(true);
    const seq = await store.append(sos({ deviceId: 'PGR-SOS' }));
    store.deadLetter({ source: 'mqtt', reason: 'DEV_ERR_SCHEMA', detail: 'bad', payload: Buffer.from('x') });
    store.flush();

    expect(store.queryReadings({ deviceId: 'PGR-SOS' }).map((r) => r.seq)).toEqual([seq]);
    expect(store.stats()).toMatchObject({ telemetryRefused: true, refusedTelemetry: 2, refusedDeadLetters: 1, deadLetters: 0, failedBatches: 0 });
    expect(t.logger.at('warn').some((r) => /telemetry refused/.test(r.msg ?? ''))).toBe(true);

    store.refuseTelemetry(false);
    await store.append(telemetry({ deviceId: 'SMK-AFTER' }));
    expect(store.stats().telemetryRefused).toBe(false);
    await store.close();
    // Nothing refused was stored; everything that resolved was.
    expect(deviceIds(t.path)).toEqual(['SMK-BEFORE', 'PGR-SOS', 'SMK-AFTER']);
  });

  it('state changes are not plain telemetry: a cancel, a fire_clear, a meter leakage edge are stored while refusing', async () => {
    const store = t.open();
    store.refuseTelemetry(true);
    await store.append(sos({ deviceId: 'PGR-CANCEL', events: ['cancel'] }));
    await store.append(telemetry({ deviceId: 'SMK-CLEAR', events: ['fire_clear'] }));
    await store.append(telemetry({ deviceId: 'ELC-LEAK', kind: 'electrical', model: 'elec-ers1', events: ['leakage'], metrics: { residual_ma: 420 }, state: { leakage: true } }));
    const refused = await store.append(telemetry({ deviceId: 'SMK-QUIET', events: [] })).catch((err: unknown) => err);
    expect(isStoreError(refused, 'STORE_ERR_FULL')).toBe(true);
    expect(store.stats().refusedTelemetry).toBe(1);
    await store.close();
    expect(deviceIds(t.path)).toEqual(['PGR-CANCEL', 'SMK-CLEAR', 'ELC-LEAK']);
  });

  it('a reading carrying an alarm event among others is an alarm: stored while refusing', async () => {
    const store = t.open();
    store.refuseTelemetry(true);
    await store.append(telemetry({ deviceId: 'SMK-FIRE', events: ['heartbeat', 'fire_alarm'], state: { smoke: true, tamper: false, fault: false, battery_low: false } }));
    expect(store.queryReadings({ deviceId: 'SMK-FIRE' })).toHaveLength(1);
    expect(store.stats().refusedTelemetry).toBe(0);
  });
});

describe('the pipeline in disk-full mode', () => {
  const SMOKE: DeviceRecord = { id: 'SMK-1', model: 'smoke-json', place: { grid: '110101013001002', building: '7', room: 'B1-3' } };
  const json = (v: unknown) => Buffer.from(JSON.stringify(v));

  it('drops plain telemetry (resolves: the PUBACK goes out, the connection stays), stores the fire, keeps state edges right', async () => {
    const store = t.open({ groupCommit: { maxDelayMs: 0, maxRows: 100 } });
    const pipeline = createPipeline({ store, modelFor: (id) => MODELS.get(id), logger: { ...t.logger, debug: () => {} }, clock: t.clock.now });
    const uplink = (payload: Buffer) => pipeline.acceptMqtt({ device: SMOKE, payload, qos: 1, receivedAt: t.clock.now(), overLimit: false });
    store.refuseTelemetry(true);
    await expect(uplink(json({ smoke: false, battery: 80 }))).resolves.toBeUndefined();
    expect(store.stats()).toMatchObject({ rows: 0, refusedTelemetry: 1 });
    expect(pipeline.previousState('SMK-1')).toBeUndefined(); // the dropped reading set nothing
    await uplink(json({ smoke: true, battery: 80 }));
    expect(store.queryReadings({ deviceId: 'SMK-1' }).map((r) => r.reading.events)).toEqual([['fire_alarm']]);
    // Another error of the store still rejects: the broker withholds the PUBACK then.
    await store.close();
    await expect(uplink(json({ smoke: true, battery: 80 }))).rejects.toSatisfy((err: unknown) => isStoreError(err, 'STORE_ERR_CLOSED'));
  });
});

describe('onFull', () => {
  // SQLITE_FULL from a tiny max_page_count, filled with alarms that nothing may delete.
  async function fillWithAlarms(store: ReturnType<typeof t.open>, id: (n: number) => string, max = 2000): Promise<{ failure: unknown; last: number }> {
    let last = 0;
    for (let n = 0; n < max; n++) {
      try {
        last = await store.append(sos({ deviceId: id(n) }));
      } catch (err) {
        return { failure: err, last };
      }
    }
    return { failure: undefined, last };
  }

  it('is called once per failed commit; a hook that frees nothing cannot make the commit loop', async () => {
    let calls = 0;
    const store = t.open({ maxDbBytes: 96 * 1024, onFull: () => ++calls > 0 });
    const { failure } = await fillWithAlarms(store, (n) => `PGR-${n}`);
    expect(isStoreError(failure, 'STORE_ERR_WRITE')).toBe(true);
    // Tried again after the hook said it freed space, and again after making room: then rejected.
    expect(calls).toBe(1);
    expect(store.stats().failedBatches).toBe(1);
  });

  it('a commit the hook can help is retried and stored: nothing of it is refused', async () => {
    // The hook frees space the way releasing the reserve does: by giving pages back (here: the
    // cap is reached, and the hook empties the table through a second connection; the retry reuses its pages).
    let freed = 0;
    const store = t.open({
      maxDbBytes: 96 * 1024,
      onFull: () => {
        const db = new Database(t.path);
        try {
          freed += db.prepare('DELETE FROM readings').run().changes;
        } finally {
          db.close();
        }
        return true;
      },
    });
    // One device: its state row does not grow with the alarms, so what the hook frees is reused.
    const { failure, last } = await fillWithAlarms(store, () => 'PGR-ONE', 600);
    // Every SQLITE_FULL was cured by the hook: the loop ran to its end with every alarm stored.
    expect(failure).toBeUndefined();
    expect(freed).toBeGreaterThan(300);
    expect(store.stats().failedBatches).toBe(0);
    expect(store.queryReadings({ deviceId: 'PGR-ONE', order: 'desc', limit: 1 }).map((r) => r.seq)).toEqual([last]);
    expect(last).toBe(600); // the cap holds ~165 of them: the hook cured several SQLITE_FULLs
    expect(t.logger.at('error')).toEqual([]);
  });

  it('is checked when the store opens', () => {
    expect(() => t.open({ onFull: 'yes' as unknown as () => boolean })).toThrow(/onFull/);
  });
});
