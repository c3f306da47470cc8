import { afterAll, describe, expect, it } from 'vitest';
import { cleanupAll } from '../helpers/cleanup.js';
import { prepareExampleSite } from './example-site.js';

// Issue 3 "done when": `gridedge start` with the example config and `gridedge simulate` in another
// terminal give normalized readings for all five models — two real processes, real MQTT, and
// real pseudo-terminals for the Modbus bus and the RF bridge.

const SCENARIO = `
name: e2e — the reference scenario, compressed
steps:
  - { at: 0s, meter: { bus: rs485-1, address: 1 }, sample: { metrics: { voltage_v: 221.6, t1_c: 26.5 }, state: { short_circuit: false } } }
  - { at: 0s, device: CTW-0701-B13, send: { events: [heartbeat], metrics: { battery_pct: 88 } } }
  - { at: 0s, device: PGR-0501-302, send: { events: [heartbeat], metrics: { battery_pct: 76 } } }
  - { at: 2s, meter: { bus: rs485-1, address: 1 }, sample: { metrics: { current_a: 38.6, t1_c: 40 }, state: { short_circuit: true } } }
  - { at: 3s, device: SMK-0701-B13, send: { events: [fire_alarm] } }
  - { at: 3s, rf: { bus: rf-1, id: 5A3C1, key: sos } }
  - { at: 3s, device: PGR-0501-302, send: { events: [sos] } }
`;


describe('gridedge start + gridedge simulate, all five models', () => {
  afterAll(async () => {
    await cleanupAll();
  });

  it('stores normalized readings for every model, alarms included', async () => {
    const site = await prepareExampleSite();
    const gateway = await site.startGateway();
    const sim = await site.simulate(gateway.port, SCENARIO);
    const status = await sim.waitForExit(60_000);
    expect(status, sim.output()).toEqual({ code: 0, signal: null });
    // Let the last meter poll (1 s interval) and the RF press land, then stop the gateway cleanly.
    await new Promise((r) => setTimeout(r, 2_500));
    expect(await gateway.process.stop(10_000)).toMatchObject({ code: 0 });

    const store = site.openStore();
    try {
      const events = (id: string) => store.queryReadings({ deviceId: id, limit: 10_000 }).flatMap((s) => s.reading.events);
      const models = (id: string) => new Set(store.queryReadings({ deviceId: id, limit: 1 }).map((s) => s.reading.model));
      expect(models('ELC-0701-B13')).toEqual(new Set(['elec-ers1']));
      expect(events('ELC-0701-B13')).toContain('short_circuit');
      expect(events('SMK-0701-B13')).toEqual(['fire_alarm']);
      expect(events('CTW-0701-B13')).toEqual(['heartbeat']);
      expect(events('PGR-0501-302')).toEqual(['heartbeat', 'sos']);
      expect(events('RFP-0501-302')).toEqual(['sos']);
      const [reading] = store.queryReadings({ deviceId: 'RFP-0501-302', limit: 1 });
      expect(reading?.reading).toMatchObject({ model: 'pager-rf', kind: 'pager', place: { grid: '110101013001002', building: '5', room: '302' } });
      // The other meters on both buses were polled too.
      expect(store.queryReadings({ deviceId: 'ELC-0001', limit: 1 })).toHaveLength(1);
    } finally {
      await store.close();
    }
  }, 120_000);
});
