import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DeviceRecord } from '../../devices/device-record.js';
import type { Reading } from '../../devices/reading.js';
import { localTopics } from '../../devices/topics.js';
import type { DeviceRegistry } from '../../gateway/registry/registry.js';
import {
  connectAsDevice,
  connectMqtt,
  startGatewayInProcess,
  sleep,
  waitUntil,
  writeGatewaySite,
  type GatewaySite,
  type InProcessGateway,
  type TestDevice,
} from '../helpers/gateway.js';

// SPEC §3 through the real gateway (createGateway on a gridedge.yaml and a devices.csv with
// scrypt-hashed secrets): rejections are counted and dead-lettered without stopping the good
// readings behind them, the rate limit drops telemetry but never an alarm, events after a
// restart compare with the stored state, a foreign MQTT stack is stored like mqtt.js, and
// operator tools see the normalized readings.

const run = promisify(execFile);

const dev = (id: string, model: TestDevice['model'], room = 'B1-3'): TestDevice => ({ id, model, secret: `s3cret-${id}`, building: '7', room });
const BAD = {
  json: dev('SMK-BADJSON', 'smoke-json'),
  utf8: dev('SMK-BADUTF8', 'smoke-json'),
  schema: dev('SMK-BADSCHEMA', 'smoke-json'),
  model: dev('SMK-BADMODEL', 'smoke-json'),
};
const LIMITED = dev('PGR-LIMIT', 'pager-json', '302');
const RESTART = dev('SMK-RESTART', 'smoke-json');
const FOREIGN = dev('SMK-FOREIGN', 'smoke-json', '地下一层 2号');
const WATCHED = dev('PGR-WATCHED', 'pager-json', '地下一层,3号');
const BUSY = dev('SMK-BUSY', 'smoke-json', 'B1-4');
const OPERATOR = { username: 'local', password: 'op-pass-1234' };
// Small on purpose: the over-limit test needs few messages. Every other test sends ≤ 3 per device.
const RATE = { perSecond: 1, burst: 3 };

/** Devices whose record says a model this build does not know, from the moment the test flips it. */
const unknownModelFor = new Set<string>();
function withSwitchableModel(registry: DeviceRegistry): DeviceRegistry {
  return {
    ...registry,
    get(id) {
      const r = registry.get(id);
      // A registry reloaded while the device is connected (SPEC §11: read "when it changes").
      return r && unknownModelFor.has(id) ? ({ ...r, model: 'smoke-x9' } satisfies DeviceRecord) : r;
    },
  };
}

let site: GatewaySite;
let gw: InProcessGateway;

beforeAll(async () => {
  site = await writeGatewaySite({
    devices: [...Object.values(BAD), LIMITED, RESTART, FOREIGN, WATCHED, BUSY],
    rateLimit: RATE,
    operators: [OPERATOR],
  });
  gw = await startGatewayInProcess(site, { registry: withSwitchableModel });
});
afterAll(async () => {
  await gw.stop();
});

function readingsOf(deviceId: string): Reading[] {
  return gw.gateway.store.queryReadings({ deviceId }).map((r) => r.reading);
}

const smoke = (ts: number, smokeOn = false): string => JSON.stringify({ ts, smoke: smokeOn, battery: 90, rssi: -70 });

describe('rejected payloads', () => {
  it.each([
    ['malformed JSON', BAD.json, '{"smoke":tru', 'DEV_ERR_JSON'],
    ['non-UTF-8 bytes', BAD.utf8, Buffer.from([0x7b, 0x22, 0x73, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d]), 'DEV_ERR_UTF8'],
    ['a schema violation', BAD.schema, '{"smoke":"yes","battery":85}', 'DEV_ERR_SCHEMA'],
    ['an unknown model', BAD.model, smoke(Date.now() - 5_000), 'ING_ERR_MODEL'],
  ] as const)('%s is a counted rejection and a dead letter; a good reading right after it is stored', async (_what, device, payload, reason) => {
    const before = gw.gateway.pipeline.stats().rejected[reason] ?? 0;
    const c = await connectAsDevice(gw.url, device);
    if (reason === 'ING_ERR_MODEL') unknownModelFor.add(device.id);
    await c.publishAsync(`dev/${device.id}/up`, payload, { qos: 1 });
    unknownModelFor.delete(device.id);
    const goodTs = Date.now() - 1_000;
    await c.publishAsync(`dev/${device.id}/up`, smoke(goodTs), { qos: 1 });

    // The PUBACK of the good one came after its commit: it is there now, nothing else is.
    expect(readingsOf(device.id).map((r) => r.ts)).toEqual([goodTs]);
    expect(gw.gateway.pipeline.stats().rejected[reason]).toBe(before + 1);
    const letters = gw.gateway.store.listDeadLetters({ limit: 1000 }).filter((d) => d.deviceId === device.id);
    expect(letters.map((d) => [d.source, d.reason])).toEqual([['mqtt', reason]]);
    if (reason !== 'ING_ERR_MODEL') expect(letters[0]?.payload?.equals(Buffer.from(payload))).toBe(true);
    expect(gw.gateway.store.stats().deadLettersByReason[reason]).toBeGreaterThanOrEqual(1);
    await c.endAsync();
  });
});

describe('rate limit (SPEC §3)', () => {
  it('drops and counts over-limit telemetry of a device, but stores its sos over the limit', async () => {
    const refusedBefore = gw.gateway.broker.stats().refused.over_limit;
    const droppedBefore = gw.gateway.pipeline.stats().droppedOverLimit;
    const c = await connectAsDevice(gw.url, LIMITED);
    const t0 = Date.now() - 10_000;
    const heartbeats = 10;
    for (let i = 0; i < heartbeats; i++) {
      await c.publishAsync(`dev/${LIMITED.id}/up`, JSON.stringify({ ts: t0 + i, event: 'heartbeat', battery: 80 }), { qos: 1 });
    }
    const sosTs = t0 + 100;
    await c.publishAsync(`dev/${LIMITED.id}/up`, JSON.stringify({ ts: sosTs, event: 'sos', battery: 80 }), { qos: 1 });

    const dropped = gw.gateway.pipeline.stats().droppedOverLimit - droppedBefore;
    const overLimit = gw.gateway.broker.stats().refused.over_limit - refusedBefore;
    const stored = readingsOf(LIMITED.id);
    expect(dropped).toBeGreaterThanOrEqual(heartbeats - RATE.burst - 1);
    // The sos was over the limit too (one more than the telemetry dropped), and it is stored.
    expect(overLimit).toBe(dropped + 1);
    expect(stored.filter((r) => r.events.includes('heartbeat'))).toHaveLength(heartbeats - dropped);
    expect(stored.filter((r) => r.events.includes('sos')).map((r) => r.ts)).toEqual([sosTs]);
    await c.endAsync();
  });
});

describe('foreign clients and operators', () => {
  it('stores a smoke-json reading published at QoS 1 by mosquitto_pub (mosquitto-clients)', async () => {
    const payload = '{"smoke":true,"battery":85,"rssi":-71}';
    await run(
      'mosquitto_pub',
      ['-V', 'mqttv311', '-h', '127.0.0.1', '-p', String(gw.port), '-i', FOREIGN.id, '-u', FOREIGN.id, '-P', FOREIGN.secret, '-t', `dev/${FOREIGN.id}/up`, '-q', '1', '-m', payload],
      { timeout: 10_000 },
    );
    // mosquitto_pub exits after the PUBACK, i.e. after the commit.
    const [r] = readingsOf(FOREIGN.id);
    expect(r).toMatchObject({
      deviceId: FOREIGN.id,
      model: 'smoke-json',
      kind: 'smoke',
      metrics: { battery_pct: 85, rssi_dbm: -71 },
      state: { smoke: true },
      events: ['fire_alarm'],
      place: { grid: '110101013001002', building: '7', room: '地下一层 2号' },
    });
  });

  it('an operator subscribed to gridedge/readings/# receives the normalized reading', async () => {
    // With no operator connected the republish is skipped (nobody could receive a QoS 0 message).
    expect(gw.gateway.broker.hasLocalReaders()).toBe(false);
    const op = await connectMqtt(gw.url, { clientId: 'local-tool-1', username: OPERATOR.username, password: OPERATOR.password });
    await waitUntil('the operator counted as a reader', () => gw.gateway.broker.hasLocalReaders(), 5_000);
    const received: { topic: string; reading: Reading }[] = [];
    op.on('message', (topic, payload) => received.push({ topic, reading: JSON.parse(payload.toString('utf8')) as Reading }));
    await op.subscribeAsync(localTopics.readingsFilter, { qos: 0 });

    const c = await connectAsDevice(gw.url, WATCHED);
    const ts = Date.now() - 2_000;
    await c.publishAsync(`dev/${WATCHED.id}/up`, JSON.stringify({ ts, event: 'service_call', service: 'meal', battery: 64 }), { qos: 1 });
    await waitUntil('the republished reading', () => received.some((m) => m.reading.deviceId === WATCHED.id), 5_000);

    const got = received.find((m) => m.reading.deviceId === WATCHED.id);
    expect(got?.topic).toBe(`gridedge/readings/pager/${WATCHED.id}`);
    const [stored] = readingsOf(WATCHED.id);
    expect(got?.reading).toEqual(stored);
    expect(got?.reading).toMatchObject({ model: 'pager-json', events: ['service_call'], service: 'meal', metrics: { battery_pct: 64 }, place: { room: '地下一层,3号' } });
    await c.endAsync();
    await op.endAsync();
    await waitUntil('the operator is gone', () => !gw.gateway.broker.hasLocalReaders(), 5_000);
  });
});

describe('a commit that fails (SPEC §3: no PUBACK, the device resends)', () => {
  it('gives the resent alarm its fire_alarm: the failed reading did not become the state events compare with', async () => {
    // Another connection holds the write lock: the gateway's commit waits busy_timeout (1 s) and fails.
    const locker = new Database(site.dbPath);
    locker.exec('BEGIN IMMEDIATE');
    const failedBefore = gw.gateway.broker.stats().refused.handler_error;
    const c = await connectMqtt(gw.url, { clientId: BUSY.id, username: BUSY.id, password: BUSY.secret, reconnectPeriod: 100 });
    const ts = Date.now() - 3_000;
    let acked = false;
    const published = c.publishAsync(`dev/${BUSY.id}/up`, smoke(ts, true), { qos: 1 }).then(() => {
      acked = true;
    });
    try {
      await waitUntil('the failed commit', () => gw.gateway.broker.stats().refused.handler_error > failedBefore, 10_000, 20);
      expect(acked).toBe(false);
      expect(readingsOf(BUSY.id)).toEqual([]);
    } finally {
      locker.exec('ROLLBACK');
      locker.close();
    }
    // mqtt.js resends the unacknowledged PUBLISH when it reconnects; now it commits.
    await Promise.race([published, sleep(10_000)]);
    expect(acked).toBe(true);
    const stored = readingsOf(BUSY.id);
    expect(stored.map((r) => [r.ts, r.state.smoke, r.events])).toEqual([[ts, true, ['fire_alarm']]]);
    await c.endAsync();
  });
});

describe('restart (SPEC §3.3)', () => {
  it('compares the first message after a restart with the stored state: no second fire_alarm', async () => {
    const t0 = Date.now() - 20_000;
    let c = await connectAsDevice(gw.url, RESTART);
    await c.publishAsync(`dev/${RESTART.id}/up`, smoke(t0, true), { qos: 1 });
    await c.endAsync();
    expect(readingsOf(RESTART.id).map((r) => r.events)).toEqual([['fire_alarm']]);

    await gw.stop();
    gw = await startGatewayInProcess(site, { registry: withSwitchableModel });

    c = await connectAsDevice(gw.url, RESTART);
    await c.publishAsync(`dev/${RESTART.id}/up`, smoke(t0 + 1, true), { qos: 1 });
    await c.publishAsync(`dev/${RESTART.id}/up`, smoke(t0 + 2, false), { qos: 1 });
    await c.endAsync();
    const readings = readingsOf(RESTART.id);
    expect(readings.map((r) => r.ts)).toEqual([t0, t0 + 1, t0 + 2]);
    // Still in alarm: the same state again is no new fire; the clear is an edge against it too.
    expect(readings[1]?.events).not.toContain('fire_alarm');
    expect(readings[1]?.state.smoke).toBe(true);
    expect(readings[2]?.events).toContain('fire_clear');
  });
});
