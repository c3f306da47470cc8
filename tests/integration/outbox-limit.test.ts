import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LoadSummary } from '../../simulators/load.js';
import { runLoad } from '../../simulators/load.js';
import { startInfluxd } from '../helpers/influxd.js';
import { freePort } from '../helpers/ports.js';
import {
  connectAsDevice,
  influxKeys,
  influxQuery,
  makeDevices,
  startGatewayInProcess,
  toLoadDevices,
  waitUntil,
  writeGatewaySite,
  type GatewaySite,
  type InProcessGateway,
  type TestDevice,
} from '../helpers/gateway.js';

// SPEC §5: the outbox is bounded; when full, the oldest telemetry goes first, with a counter and a
// warning; alarm readings are never dropped. An influxdb1 sink points at a port where nothing
// listens, the outbox (1 MiB, the smallest the config allows) overflows with telemetry, an sos
// comes in and more telemetry after it; then influxd starts on that port and gets what was kept.

const MAX_BYTES = 1024 * 1024;
const DB = 'gridedge';
const TELEMETRY = makeDevices('TEL', 10, { model: 'smoke-json' });
const PAGER: TestDevice = { id: 'PGR-SOS', model: 'pager-json', secret: 's3cret-PGR-SOS', building: '5', room: '302' };

let site: GatewaySite;
let gw: InProcessGateway;
let influxPort: number;

beforeAll(async () => {
  influxPort = await freePort();
  site = await writeGatewaySite({
    devices: [...TELEMETRY, PAGER],
    outboxMaxBytes: MAX_BYTES,
    rateLimit: { perSecond: 10_000, burst: 10_000 },
    sinks: [{ type: 'embedded' }, { type: 'influxdb1', url: `http://127.0.0.1:${influxPort}`, database: DB, flushInterval: '100ms' }],
  });
  gw = await startGatewayInProcess(site);
});
afterAll(async () => {
  await gw.stop();
});

function fill(ms: number): Promise<LoadSummary> {
  return runLoad({ url: gw.url, devices: toLoadDevices(TELEMETRY), ratePerSecond: 3_000, durationMs: ms, qos: 1, drainMs: 10_000 });
}

describe('outbox bound with the alarm lane', () => {
  it('keeps the sos, drops the oldest telemetry with a counter and a warning, and delivers what was kept once influxd is up', async () => {
    const before = await fill(2_000);
    const c = await connectAsDevice(gw.url, PAGER);
    const sosTs = Date.now();
    await c.publishAsync(`dev/${PAGER.id}/up`, JSON.stringify({ ts: sosTs, event: 'sos', battery: 71 }), { qos: 1 });
    await c.endAsync();
    // More telemetry behind it: the sos is now among the oldest undelivered readings.
    const after = await fill(1_500);
    gw.gateway.store.flush();

    const acked = [...before.ledger.acked(), ...after.ledger.acked()];
    expect(before.unacked + after.unacked).toBe(0);
    const store = gw.gateway.store;
    const stats = store.stats();
    console.log(`outbox: ${acked.length} telemetry acked, ${stats.droppedTelemetry} dropped, ${stats.rows} rows kept, outbox ${stats.outboxBytes} of ${stats.outboxMaxBytes} bytes`);
    expect(stats.droppedTelemetry).toBeGreaterThan(0);
    expect(stats.outboxBytes).toBeLessThanOrEqual(MAX_BYTES);
    expect(store.queryReadings({ deviceId: PAGER.id }).map((r) => [r.reading.ts, r.reading.events])).toEqual([[sosTs, ['sos']]]);
    expect(gw.logs().some((l) => l.includes('outbox over its bound; oldest undelivered telemetry dropped'))).toBe(true);

    // Oldest first: per device, what is kept is the newest part of what it sent, without a hole.
    let kept = 0;
    for (const d of TELEMETRY) {
      const sent = acked.filter((e) => e.deviceId === d.id).map((e) => e.ts);
      const stored = store.queryReadings({ deviceId: d.id, limit: 10_000 }).map((r) => r.reading.ts);
      expect(stored).toEqual(sent.slice(sent.length - stored.length));
      kept += stored.length;
    }
    expect(kept + 1).toBe(stats.rows);
    expect(acked.length - kept).toBe(stats.droppedTelemetry);

    // The server comes: everything kept arrives, the sos with it.
    const influx = await startInfluxd({ port: influxPort });
    await waitUntil(
      'the sos in InfluxDB',
      async () => (await influxQuery(influx, DB, `SELECT count(battery_low) FROM pager WHERE device_id = '${PAGER.id}'`).catch(() => [])).length > 0,
      30_000,
      200,
    );
    const sos = await influxQuery(influx, DB, `SELECT * FROM pager WHERE device_id = '${PAGER.id}'`);
    const columns = sos[0]?.columns ?? [];
    const row = sos[0]?.values[0] ?? [];
    expect(row[columns.indexOf('time')]).toBe(sosTs);
    expect(row[columns.indexOf('events')]).toBe('sos');
    await waitUntil('the outbox drained', () => store.stats().outboxBytes === 0, 20_000, 100);
    const inInflux = await influxKeys(influx, DB);
    expect(inInflux.size).toBe(stats.rows);
  }, 60_000);
});
