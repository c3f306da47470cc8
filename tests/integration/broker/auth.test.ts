import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { hashSecret } from '../../../gateway/registry/secrets.js';
import { connackCode, connectDevice, endAllClients, endClient, startHarness, type Harness, type TestDevice } from './harness.js';

// SPEC §3: client id = username = device id, password = secret; bad credentials → 4; unknown
// device, wrong client id → 5. And (the brief) a non-MQTT model → 5.
const SMOKE: TestDevice = { id: 'SMK-0001', model: 'smoke-json', secret: 'red-lantern-42' };
const PAGER: TestDevice = { id: 'PGR-0001', model: 'pager-json', secret: 'jade-rabbit-7' };
const METER: TestDevice = { id: 'ELE-0001', model: 'elec-ers1', secret: 'never-on-mqtt' };
const OPERATOR = { username: 'local', password: 'op-secret-xyz' };

let h: Harness;

beforeAll(async () => {
  h = await startHarness({ devices: [SMOKE, PAGER, METER], operators: [OPERATOR] });
});
afterEach(endAllClients);
afterAll(() => h.stop());

describe('device authentication', () => {
  it('accepts a device with its id as client id and username and its secret', async () => {
    const c = await connectDevice(h.port, SMOKE);
    expect(c.connected).toBe(true);
    await endClient(c);
  });

  it('refuses a wrong secret with CONNACK 4', async () => {
    const before = h.broker.stats().refused.auth_bad_secret;
    expect(await connackCode(h.port, { clientId: SMOKE.id, username: SMOKE.id, password: 'wrong' })).toBe(4);
    expect(await connackCode(h.port, { clientId: SMOKE.id, username: SMOKE.id })).toBe(4);
    expect(h.broker.stats().refused.auth_bad_secret).toBe(before + 2);
  });

  it('refuses an unknown device with CONNACK 5', async () => {
    expect(await connackCode(h.port, { clientId: 'SMK-9999', username: 'SMK-9999', password: 'x' })).toBe(5);
    expect(await connackCode(h.port, { clientId: 'anon' })).toBe(5);
    expect(h.broker.stats().refused.auth_unknown_device).toBe(2);
  });

  it('refuses a known device with another client id with CONNACK 5, before any scrypt', async () => {
    const calls = h.verifyCalls.get(PAGER.id) ?? 0;
    expect(await connackCode(h.port, { clientId: 'someone-else', username: PAGER.id, password: PAGER.secret })).toBe(5);
    expect(h.broker.stats().refused.auth_client_id_mismatch).toBe(1);
    expect(h.verifyCalls.get(PAGER.id) ?? 0).toBe(calls);
  });

  it('refuses a device whose model is not an MQTT model with CONNACK 5, even with the right secret', async () => {
    expect(await connackCode(h.port, { clientId: METER.id, username: METER.id, password: METER.secret })).toBe(5);
    expect(h.broker.stats().refused.auth_not_mqtt_model).toBe(1);
  });

  it('caches a verified secret (no second scrypt) and drops the entry when the hash changes', async () => {
    const before = h.verifyCalls.get(PAGER.id) ?? 0;
    await endClient(await connectDevice(h.port, PAGER));
    expect(h.verifyCalls.get(PAGER.id)).toBe(before + 1);
    for (let i = 0; i < 3; i++) await endClient(await connectDevice(h.port, PAGER));
    expect(h.verifyCalls.get(PAGER.id)).toBe(before + 1);

    // A wrong secret is never answered from the cache.
    expect(await connackCode(h.port, { clientId: PAGER.id, username: PAGER.id, password: 'jade-rabbit-8' })).toBe(4);

    // The registry gets a new secret: the old one stops working at once.
    const record = h.records.get(PAGER.id);
    if (!record) throw new Error('no record');
    h.records.set(PAGER.id, { ...record, secretHash: await hashSecret('new-secret') });
    expect(await connackCode(h.port, { clientId: PAGER.id, username: PAGER.id, password: PAGER.secret })).toBe(4);
    const c = await connectDevice(h.port, { ...PAGER, secret: 'new-secret' });
    await endClient(c);
    h.records.set(PAGER.id, record);
  });

  it('a reconnect storm of one device costs one scrypt', async () => {
    const storm = { id: 'SMK-0001', model: 'smoke-json', secret: SMOKE.secret };
    await endClient(await connectDevice(h.port, storm));
    const before = h.verifyCalls.get(storm.id) ?? 0;
    const t0 = performance.now();
    const cs = await Promise.all(Array.from({ length: 50 }, () => connectDevice(h.port, storm).catch(() => undefined)));
    const ms = performance.now() - t0;
    await endAllClients();
    // 50 connections with one client id take each other over; some may lose the race, that is fine.
    expect(cs.filter(Boolean).length).toBeGreaterThan(0);
    expect(h.verifyCalls.get(storm.id)).toBe(before);
    console.log(`50 cached reconnects of one device: ${ms.toFixed(0)} ms`);
  });
});

describe('operator authentication', () => {
  it('accepts a configured operator and refuses a wrong password with CONNACK 4', async () => {
    expect(await connackCode(h.port, { clientId: 'tool-1', username: OPERATOR.username, password: OPERATOR.password })).toBe(0);
    expect(await connackCode(h.port, { clientId: 'tool-1', username: OPERATOR.username, password: 'nope' })).toBe(4);
    expect(h.broker.stats().refused.auth_operator_bad_password).toBe(1);
  });

  it('refuses an operator using a device id as client id (it would take the device session over)', async () => {
    expect(await connackCode(h.port, { clientId: SMOKE.id, username: OPERATOR.username, password: OPERATOR.password })).toBe(5);
    expect(h.broker.stats().refused.auth_operator_client_id).toBe(1);
  });
});

describe('logs', () => {
  it('never contain a secret or password, and name refusals by reason', () => {
    const logs = h.logs();
    for (const s of [SMOKE.secret, PAGER.secret, METER.secret, OPERATOR.password, 'jade-rabbit-8', 'new-secret']) expect(logs).not.toContain(s);
    expect(logs).toContain('"reason":"auth_bad_secret"');
  });
});
