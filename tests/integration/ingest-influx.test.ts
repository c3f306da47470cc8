import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Reading } from '../../devices/reading.js';
import { runLoad } from '../../simulators/load.js';
import { createMqttDevice, type MqttDevice } from '../../simulators/mqtt-device.js';
import { registerCleanup } from '../helpers/cleanup.js';
import { startInfluxd, type Influxd } from '../helpers/influxd.js';
import {
  GRID,
  influxCounts,
  influxKeys,
  influxQuery,
  makeDevices,
  missing,
  mqttModel,
  sleep,
  startGatewayInProcess,
  waitUntil,
  writeGatewaySite,
  type InProcessGateway,
  type TestDevice,
} from '../helpers/gateway.js';

// SPEC §3 + §5 end to end: MQTT simulators → the real gateway (in-process, real store) → a real
// InfluxDB 1.x. The schema as the server stores it; an influxd outage of ~30 s under QoS 1 load
// after which every PUBACKed reading is there, counted exactly; a field-type conflict that is
// dead-lettered while the rest flows.

const DB = 'gridedge';
const dev = (id: string, model: TestDevice['model'], room: string, building = '7'): TestDevice => ({ id, model, secret: `s3cret-${id}`, building, room });
const SCHEMA = {
  smokeJson: dev('SMK-TAGS', 'smoke-json', '地下一层 2号'),
  smokeCtw: dev('CTW-TAGS', 'smoke-ctw', '地下一层,3号'),
  pagerJson: dev('PGR-TAGS', 'pager-json', '302', '5'),
};
const CONFLICT = dev('PGR-CONFLICT', 'pager-json', '303', '5');
const LOAD = makeDevices('LOAD', 30);

let influx: Influxd;
let gw: InProcessGateway;
let sinkName: string;

beforeAll(async () => {
  influx = await startInfluxd();
  // SPEC §5 field-type conflict, prepared before the gateway writes anything: `service` is a
  // float in this shard, so a pager's service_call (service="meal", a string) will be refused.
  await influx.query(`CREATE DATABASE ${DB}`);
  await influx.write(DB, `pager,device_id=PRE-EXISTING service=1 ${Date.now() - 60_000}`);

  const site = await writeGatewaySite({
    devices: [...Object.values(SCHEMA), CONFLICT, ...LOAD],
    // The outage load is 10 msg/s per device: keep the per-device limit out of the way.
    rateLimit: { perSecond: 1_000, burst: 1_000 },
    sinks: [{ type: 'embedded' }, { type: 'influxdb1', url: influx.url, database: DB, flushInterval: '200ms' }],
  });
  sinkName = `sink:influxdb1:${influx.url}/${DB}`;
  gw = await startGatewayInProcess(site);
}, 60_000);
afterAll(async () => {
  await gw.stop();
});

async function simulator(d: TestDevice): Promise<MqttDevice> {
  const device = createMqttDevice({ url: gw.url, deviceId: d.id, secret: d.secret, model: mqttModel(d.model), heartbeatMs: 0, respond: false });
  registerCleanup(`simulator ${d.id}`, () => device.stop({ abrupt: true }));
  await device.start();
  return device;
}

/** One point of a measurement as `column → value` (tags and fields alike), time in ms. */
async function pointsOf(measurement: string, deviceId: string): Promise<Record<string, unknown>[]> {
  const series = await influxQuery(influx, DB, `SELECT * FROM ${measurement} WHERE device_id = '${deviceId}'`);
  return series.flatMap((s) =>
    s.values.map((row): Record<string, unknown> => Object.fromEntries(s.columns.map((c, i): [string, unknown] => [c, row[i]]).filter(([, v]) => v !== null))),
  );
}

/** What SPEC §5 says the point of a reading is: tags from the place, floats, booleans, events joined. */
function expectedPoint(r: Reading): Record<string, unknown> {
  return {
    time: r.ts,
    device_id: r.deviceId,
    model: r.model,
    grid: r.place.grid,
    building: r.place.building,
    room: r.place.room,
    ...r.metrics,
    ...r.state,
    ...(r.events.length > 0 ? { events: r.events.join(',') } : {}),
    ...(r.service !== undefined ? { service: r.service } : {}),
  };
}

describe('schema in InfluxDB (SPEC §5)', () => {
  it('readings of all three MQTT models arrive with measurement, tags and typed fields', async () => {
    const smokeJson = await simulator(SCHEMA.smokeJson);
    const smokeCtw = await simulator(SCHEMA.smokeCtw);
    const pagerJson = await simulator(SCHEMA.pagerJson);
    await smokeJson.send({ events: ['fire_alarm'], metrics: { battery_pct: 85, rssi_dbm: -71 } });
    await smokeCtw.send({ events: ['heartbeat'], metrics: { battery_pct: 60, rssi_dbm: -95 } });
    await pagerJson.alarm('sos', { metrics: { battery_pct: 55 } });

    const cases = [
      { d: SCHEMA.smokeJson, measurement: 'smoke' },
      { d: SCHEMA.smokeCtw, measurement: 'smoke' },
      { d: SCHEMA.pagerJson, measurement: 'pager' },
    ];
    for (const { d, measurement } of cases) {
      const stored = gw.gateway.store.queryReadings({ deviceId: d.id }).map((s) => s.reading);
      expect(stored).toHaveLength(1);
      await waitUntil(`${d.id} in InfluxDB`, async () => (await pointsOf(measurement, d.id)).length > 0, 15_000, 100);
      const points = await pointsOf(measurement, d.id);
      expect(points).toEqual([expectedPoint(stored[0] as Reading)]);
      expect(points[0]).toMatchObject({ grid: GRID, room: d.room, building: d.building, model: d.model });
    }
    const [smokeAlarm] = await pointsOf('smoke', SCHEMA.smokeJson.id);
    expect(smokeAlarm).toMatchObject({ smoke: true, events: 'fire_alarm', battery_pct: 85, rssi_dbm: -71 });
    const [sos] = await pointsOf('pager', SCHEMA.pagerJson.id);
    expect(sos).toMatchObject({ events: 'sos', battery_pct: 55, battery_low: false });

    // Rooms with a space and a comma are single tag values, not broken lines.
    const rooms = await influxQuery(influx, DB, 'SHOW TAG VALUES FROM smoke WITH KEY = room');
    const roomValues: unknown[] = rooms[0]?.values.map((v) => v[1]) ?? [];
    expect(roomValues).toEqual(expect.arrayContaining(['地下一层 2号', '地下一层,3号']));
    const fieldKeys = (await influxQuery(influx, DB, 'SHOW FIELD KEYS FROM smoke'))[0]?.values ?? [];
    const fieldTypes: Record<string, unknown> = Object.fromEntries(fieldKeys.map((v): [string, unknown] => [String(v[0]), v[1]]));
    expect(fieldTypes).toEqual({
      battery_pct: 'float',
      rssi_dbm: 'float',
      smoke: 'boolean',
      silenced: 'boolean',
      fault: 'boolean',
      battery_low: 'boolean',
      tamper: 'boolean',
      test: 'boolean',
      events: 'string',
    });
  });

  it('incident changes arrive in measurement `incident`, one point per change (SPEC §5)', async () => {
    // The test above raised a fire (smoke-json fire_alarm) and an sos (pager-json).
    const sos = gw.gateway.safety.manager.list({}).find((i) => i.deviceIds.includes(SCHEMA.pagerJson.id));
    expect(sos).toMatchObject({ type: 'sos', severity: 'critical', status: 'open' });
    if (!sos) return;
    const acked = gw.gateway.safety.manager.transition(sos.id, 'ack', 'wang');
    const rows = async () =>
      (await influxQuery(influx, DB, `SELECT * FROM incident WHERE id = '${sos.id}'`)).flatMap((r) =>
        r.values.map((v): Record<string, unknown> => Object.fromEntries(r.columns.map((c, i): [string, unknown] => [c, v[i]]))),
      );
    await waitUntil('both versions of the sos in InfluxDB', async () => (await rows()).length === 2, 15_000, 100);
    expect(await rows()).toEqual([
      { time: sos.updatedAt, id: sos.id, device_id: SCHEMA.pagerJson.id, grid: GRID, type: 'sos', severity: 'critical', status: 'open', level: 0 },
      { time: acked.updatedAt, id: sos.id, device_id: SCHEMA.pagerJson.id, grid: GRID, type: 'sos', severity: 'critical', status: 'acknowledged', level: 0 },
    ]);
    const fire = await influxQuery(influx, DB, `SELECT count(id) FROM incident WHERE "type" = 'fire'`);
    expect(fire[0]?.values[0]?.[1]).toBeGreaterThanOrEqual(1);
    // Delivered: the incident store's change log holds nothing more for this sink.
    const health = gw.gateway.health().sinks.find((h) => h.name.endsWith(':incidents'));
    await waitUntil('the incident runner caught up', () => gw.gateway.health().sinks.find((h) => h.name.endsWith(':incidents'))?.depth === 0, 10_000);
    expect(health?.pointsWritten).toBeGreaterThanOrEqual(3);
  });
});

describe('a field-type conflict (SPEC §5)', () => {
  it('dead-letters the refused point and lets the rest of its batch and what follows flow', async () => {
    const pager = await simulator(CONFLICT);
    const t0 = Date.now() - 5_000;
    // One flush window: the three go in one batch, which the server refuses in part.
    await pager.send({ ts: t0, events: ['service_call'], service: 'meal', metrics: { battery_pct: 70 } });
    await pager.send({ ts: t0 + 1, events: ['sos'], metrics: { battery_pct: 70 } });
    await pager.send({ ts: t0 + 2, events: ['heartbeat'], metrics: { battery_pct: 70 } });

    const letters = (): ReturnType<InProcessGateway['gateway']['store']['listDeadLetters']> =>
      gw.gateway.store.listDeadLetters({ limit: 100 }).filter((d) => d.deviceId === CONFLICT.id);
    await waitUntil('the dead letter', () => letters().length > 0, 15_000, 100);
    await waitUntil(`${CONFLICT.id}'s other readings in InfluxDB`, async () => (await influxCounts(influx, DB, `WHERE device_id = '${CONFLICT.id}'`)).get(CONFLICT.id) === 2, 15_000, 100);

    const [letter] = letters();
    expect(letters()).toHaveLength(1);
    expect(letter).toMatchObject({ source: sinkName, reason: 'SINK_ERR_REJECTED' });
    expect(letter?.detail).toMatch(/field type conflict/);
    expect(letter?.payload?.toString('utf8')).toMatch(/service="meal"/);
    expect([...(await influxKeys(influx, DB, `WHERE device_id = '${CONFLICT.id}'`))].sort()).toEqual([`${CONFLICT.id}@${t0 + 1}`, `${CONFLICT.id}@${t0 + 2}`]);
    // Stored locally all the same: the embedded store is the record, the sink only a copy.
    expect(gw.gateway.store.queryReadings({ deviceId: CONFLICT.id })).toHaveLength(3);
    // A later reading of the device goes on as usual.
    await pager.send({ ts: t0 + 3, events: ['heartbeat'], metrics: { battery_pct: 69 } });
    await waitUntil('the next reading', async () => (await influxCounts(influx, DB, `WHERE device_id = '${CONFLICT.id}'`)).get(CONFLICT.id) === 3, 15_000, 100);
    expect(gw.gateway.store.stats().deadLettersByReason.SINK_ERR_REJECTED).toBe(1);
  });
});

describe('influxd down for ~30 s under QoS 1 load (SPEC §3, §5)', () => {
  it('delivers every PUBACKed reading once it is back, counted exactly', async () => {
    const RATE = 300;
    const UP_BEFORE_MS = 3_000;
    const OUTAGE_MS = 30_000;
    const UP_AFTER_MS = 3_000;
    const where = "WHERE device_id =~ /^LOAD-/";

    const load = runLoad({
      url: gw.url,
      devices: LOAD.map((d) => ({ id: d.id, secret: d.secret, model: mqttModel(d.model) })),
      ratePerSecond: RATE,
      durationMs: UP_BEFORE_MS + OUTAGE_MS + UP_AFTER_MS,
      qos: 1,
      drainMs: 10_000,
    });
    await sleep(UP_BEFORE_MS);
    const downAt = Date.now();
    await influx.stop();
    await sleep(OUTAGE_MS - (Date.now() - downAt));
    const health = gw.gateway.health().sinks[0];
    await influx.restart();
    const upAt = Date.now();
    const summary = await load;

    const acked = summary.ledger.acked();
    const ackedDuringOutage = acked.filter((e) => e.ts > downAt && e.ts < upAt).length;
    console.log(
      `outage ${upAt - downAt} ms: sent ${summary.sent}, acked ${summary.acked} (${ackedDuringOutage} while influxd was down), ` +
        `unacked ${summary.unacked}, PUBACK p50 ${summary.latencyMs?.p50} ms p99 ${summary.latencyMs?.p99} ms; sink while down: ${health?.state}, ok=${String(health?.ok)}, retries ${health?.retries}`,
    );
    expect(summary.unacked).toBe(0);
    expect(summary.throttled).toBe(0);
    expect(acked.length).toBeGreaterThan(0.9 * RATE * ((UP_BEFORE_MS + OUTAGE_MS + UP_AFTER_MS) / 1000));
    // The gateway kept acknowledging while the sink could not deliver: the outage was under load.
    expect(ackedDuringOutage).toBeGreaterThan(0.9 * RATE * (OUTAGE_MS / 1000) * 0.9);
    expect(health?.ok).toBe(false);

    // Backoff is capped at 30 s (ingest/sinks/backoff.ts): the sink is back within that and
    // drains its outbox, acknowledging only what the server accepted. Then count.
    await waitUntil('the sink to drain its outbox', () => (gw.gateway.store.stats().pending[sinkName] ?? -1) === 0, 60_000, 200);
    const counts = await influxCounts(influx, DB, where);
    for (const d of LOAD) {
      const want = acked.filter((e) => e.deviceId === d.id).length;
      expect({ device: d.id, count: counts.get(d.id) ?? 0 }).toEqual({ device: d.id, count: want });
    }
    const inInflux = await influxKeys(influx, DB, where);
    expect(missing(summary.ledger.ackedKeys(), inInflux)).toEqual([]);
    expect(inInflux.size).toBe(acked.length);
  }, 150_000);
});
