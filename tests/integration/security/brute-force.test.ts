import { createConnection } from 'node:net';
import { MqttClient } from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AUTH_THROTTLE_DEFAULTS } from '../../../gateway/broker/auth-throttle.js';
import { createMetrics } from '../../../gateway/metrics.js';
import { endAllClients, startHarness, waitFor, type Harness, type TestDevice } from '../broker/harness.js';

// Credential brute force (issue 8 item 4, docs/SPEC-NOTES.md "Credential brute force") against the
// real broker with real MQTT clients. Linux routes all of 127/8 to loopback, so a client bound to
// 127.0.0.N is a distinct client address. The broker's clock is the test's: lockouts end when the
// test says so, without sleeping through them.

const IP = AUTH_THROTTLE_DEFAULTS.ip;
const DEV = AUTH_THROTTLE_DEFAULTS.device;
const PAGER: TestDevice = { id: 'PGR-SOS-1', model: 'pager-json', secret: 'pager-secret-7f3a9c' };
const SMOKE: TestDevice = { id: 'SMK-BF-1', model: 'smoke-json', secret: 'smoke-secret-51de02' };
const FRESH: TestDevice = { id: 'SMK-BF-2', model: 'smoke-json', secret: 'smoke-secret-c0ffee' };
const OPERATOR = { username: 'local-tool', password: 'operator-pass-93ab' };

let h: Harness;
let now = Date.UTC(2026, 11, 4, 12, 0, 0);
const open = new Set<MqttClient>();

beforeAll(async () => {
  h = await startHarness({ devices: [PAGER, SMOKE, FRESH], operators: [OPERATOR], clock: () => now });
});
afterEach(async () => {
  await Promise.all([...open].map((c) => new Promise<void>((r) => c.end(true, {}, () => r()))));
  open.clear();
  await endAllClients();
});
afterAll(() => h.stop());

/** The CONNACK code one CONNECT from `from` (a 127/8 address) gets; 0 = accepted (then closed). */
function connack(from: string, d: { id: string; secret: string }, opts: { username?: string; clientId?: string } = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const c = new MqttClient(() => createConnection({ host: '127.0.0.1', port: h.port, localAddress: from }), {
      clientId: opts.clientId ?? d.id,
      username: opts.username ?? d.id,
      password: d.secret,
      protocolVersion: 4,
      reconnectPeriod: 0,
      connectTimeout: 10_000,
    });
    open.add(c);
    c.once('connect', () => {
      open.delete(c);
      c.end(false, {}, () => resolve(0));
    });
    c.once('error', (err) => {
      const code = (err as { code?: unknown }).code;
      open.delete(c);
      c.end(true);
      if (typeof code === 'number') resolve(code);
      else reject(err);
    });
  });
}

const verifies = (id: string): number => h.verifyCalls.get(id) ?? 0;
const refused = () => h.broker.stats().refused;

describe('per client address: lockout', () => {
  it(`${IP.maxFailures} wrong secrets lock the address out: even the right secret then gets CONNACK 5 without scrypt; other addresses are unaffected`, async () => {
    const attacker = '127.0.0.2';
    // The device connected before the attack (so its secret is in the auth cache): see below.
    expect(await connack('127.0.0.3', SMOKE)).toBe(0);
    const before = verifies(SMOKE.id);
    // The first wrong secrets are verified and get 4; then the id is rate-limited (5, no scrypt:
    // the next slot is verifyIntervalMs away and the test clock stands still); the address is
    // locked out after maxFailures in all.
    for (let i = 0; i < IP.maxFailures; i++) expect(await connack(attacker, { id: SMOKE.id, secret: `guess-${i}` })).toBe(i < DEV.maxFailures ? 4 : 5);
    expect(verifies(SMOKE.id)).toBe(before + DEV.maxFailures);
    expect(h.broker.stats().authThrottle.lockouts.ip).toBe(1);
    // Ten wrong secrets for one id also rate-limit that id (next describe); its cached secret still passes.
    expect(h.broker.stats().authThrottle.lockouts.device).toBe(1);

    const lockedBefore = refused().auth_ip_locked;
    for (let i = 0; i < 20; i++) expect(await connack(attacker, { id: SMOKE.id, secret: `guess-more-${i}` })).toBe(5);
    expect(await connack(attacker, SMOKE)).toBe(5); // the right secret too: nothing is checked
    expect(await connack(attacker, { id: 'NO-SUCH-DEVICE', secret: 'x' })).toBe(5);
    expect(await connack(attacker, { id: OPERATOR.username, secret: OPERATOR.password }, { clientId: 'tool' })).toBe(5);
    expect(refused().auth_ip_locked).toBe(lockedBefore + 23);
    expect(verifies(SMOKE.id)).toBe(before + DEV.maxFailures); // no scrypt while locked
    expect(h.broker.stats().authThrottle.active.ip).toBe(1);

    // Another address: the device connects (from the cache: no scrypt).
    expect(await connack('127.0.0.3', SMOKE)).toBe(0);
    expect(verifies(SMOKE.id)).toBe(before + DEV.maxFailures);

    // The lockout ends: the right secret from the same address passes.
    now += IP.lockoutMs;
    expect(await connack(attacker, SMOKE)).toBe(0);
    expect(h.broker.stats().authThrottle.active.ip).toBe(0);
  });

  it('a repeat offender is locked out twice as long', async () => {
    const attacker = '127.0.0.4';
    for (let round = 0; round < 2; round++) {
      for (let i = 0; i < IP.maxFailures; i++) expect(await connack(attacker, { id: 'NO-SUCH-DEVICE', secret: 'x' })).toBe(5);
      expect(await connack(attacker, SMOKE)).toBe(5);
      now += IP.lockoutMs * 2 ** round - 1;
      expect(await connack(attacker, SMOKE)).toBe(5); // 1 ms before the end
      now += 1;
      expect(await connack(attacker, SMOKE)).toBe(0);
    }
  });

  it('unknown devices and operator passwords count too (they cost no scrypt, but they are guesses)', async () => {
    const attacker = '127.0.0.5';
    const half = Math.floor(IP.maxFailures / 2);
    for (let i = 0; i < half; i++) expect(await connack(attacker, { id: `SCAN-${i}`, secret: 'x' })).toBe(5);
    for (let i = half; i < IP.maxFailures; i++) expect(await connack(attacker, { id: OPERATOR.username, secret: `pw-${i}` }, { clientId: 'tool' })).toBe(4);
    expect(await connack(attacker, { id: OPERATOR.username, secret: OPERATOR.password }, { clientId: 'tool' })).toBe(5);
    now += IP.lockoutMs;
  });

  it('the lockout is logged once, with the address and without any secret', async () => {
    const attacker = '127.0.0.6';
    const logsBefore = h.logs().length;
    for (let i = 0; i < IP.maxFailures + 10; i++) await connack(attacker, { id: PAGER.id, secret: `brute-${i}-zz` });
    const lines = h.logs().slice(logsBefore).split('\n').filter((l) => l.includes('locked out'));
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0] as string)).toMatchObject({ ip: attacker, failures: IP.maxFailures, lockoutMs: IP.lockoutMs });
    expect(h.logs()).not.toMatch(/brute-\d+-zz/);
    // While locked, attempts are counted, not logged: random usernames cannot flood the log.
    const scanBefore = h.logs().length;
    for (let i = 0; i < 20; i++) expect(await connack(attacker, { id: `RANDOM-${i}`, secret: 'x' })).toBe(5);
    expect(h.logs().slice(scanBefore)).not.toContain('RANDOM-');
    expect(h.logs()).not.toContain(PAGER.secret);
    now += IP.lockoutMs;
  });
});

describe('per device id: a rate limit a correct secret still passes', () => {
  it('wrong secrets for a pager from many addresses do not keep the pager out: it was verified before, so the cache lets it in', async () => {
    now += DEV.windowMs + 1; // earlier tests' failures are out of the window
    expect(await connack('127.0.1.1', PAGER)).toBe(0); // the pager's first connection: scrypt, then cached
    const verifyBefore = verifies(PAGER.id);
    const limitsBefore = h.broker.stats().authThrottle.lockouts.device;
    // An attack from addresses that each stay under the per-address limit.
    for (let i = 0; i < DEV.maxFailures; i++) expect(await connack(`127.0.2.${i + 1}`, { id: PAGER.id, secret: `wrong-${i}` })).toBe(4);
    expect(h.broker.stats().authThrottle.lockouts.device).toBe(limitsBefore + 1);
    expect(h.broker.stats().authThrottle.active.device).toBe(1);
    const throttledBefore = refused().auth_device_throttled;
    // More guesses in the same interval: refused without scrypt.
    for (let i = 0; i < 5; i++) expect(await connack(`127.0.3.${i + 1}`, { id: PAGER.id, secret: `wrong-again-${i}` })).toBe(5);
    expect(refused().auth_device_throttled).toBe(throttledBefore + 5);
    expect(verifies(PAGER.id)).toBe(verifyBefore + DEV.maxFailures);
    // The real pager, from its own address, mid-attack: accepted at once.
    expect(await connack('127.0.1.1', PAGER)).toBe(0);
    expect(verifies(PAGER.id)).toBe(verifyBefore + DEV.maxFailures);
  });

  it('a device never verified since start gets one verification slot per interval: the right secret passes in it', async () => {
    now += DEV.windowMs + 1;
    for (let i = 0; i < DEV.maxFailures; i++) expect(await connack(`127.0.4.${i + 1}`, { id: FRESH.id, secret: `wrong-${i}` })).toBe(4);
    expect(await connack('127.0.5.1', FRESH)).toBe(5); // the slot is not open yet
    now += DEV.verifyIntervalMs;
    expect(await connack('127.0.5.1', FRESH)).toBe(0);
    // From now on it is cached: no slot needed.
    expect(await connack('127.0.5.1', FRESH)).toBe(0);
    expect(await connack('127.0.5.1', FRESH)).toBe(0);
  });

  it('the rate limit ends after a window without wrong secrets; every step is in the metrics', async () => {
    now += DEV.windowMs + 1;
    expect(h.broker.stats().authThrottle.active.device).toBe(0);
    const metrics = createMetrics({
      health: () => ({
        broker: { clients: 0 },
        buses: [],
        sinks: [],
        store: { droppedTelemetry: 0 },
        pipeline: { accepted: {}, rejected: {}, droppedOverLimit: 0 },
        rules: { evaluations: 0 },
        uplink: undefined,
      }),
      openIncidents: () => [],
      brokerStats: () => h.broker.stats(),
    });
    const text = await metrics.text();
    metrics.stop();
    const stats = h.broker.stats();
    expect(text).toContain(`gridedge_auth_lockouts_total{scope="ip"} ${stats.authThrottle.lockouts.ip}`);
    expect(text).toContain(`gridedge_auth_lockouts_total{scope="device"} ${stats.authThrottle.lockouts.device}`);
    expect(stats.authThrottle.lockouts.ip).toBeGreaterThanOrEqual(4);
    expect(stats.authThrottle.lockouts.device).toBeGreaterThanOrEqual(4);
    expect(text).toContain(`gridedge_rejects_total{source="broker",reason="auth_ip_locked"} ${stats.refused.auth_ip_locked}`);
    expect(text).toContain(`gridedge_rejects_total{source="broker",reason="auth_device_throttled"} ${stats.refused.auth_device_throttled}`);
    expect(text).toContain('gridedge_auth_lockouts_active{scope="device"} 0');
  });
});

describe('cost', () => {
  it('200 CONNECTs from a locked-out address run no scrypt at all', async () => {
    const attacker = '127.0.0.9';
    for (let i = 0; i < IP.maxFailures; i++) await connack(attacker, { id: SMOKE.id, secret: `g-${i}` });
    const before = verifies(SMOKE.id);
    const lockedBefore = refused().auth_ip_locked;
    const codes = await Promise.all(Array.from({ length: 200 }, (_, i) => connack(attacker, { id: SMOKE.id, secret: `g2-${i}` })));
    expect(new Set(codes)).toEqual(new Set([5]));
    await waitFor(() => refused().auth_ip_locked === lockedBefore + 200, 10_000, 'refusals counted');
    expect(verifies(SMOKE.id)).toBe(before);
  });
});
