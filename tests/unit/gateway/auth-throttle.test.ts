import { describe, expect, it } from 'vitest';
import { AUTH_THROTTLE_DEFAULTS, createAuthThrottle, normalizeIp, type ThrottleEvent } from '../../../gateway/broker/auth-throttle.js';

// Credential brute force (docs/SPEC-NOTES.md): per-IP lockout, per-device-id rate limit. The clock
// is injected; nothing here sleeps.

function setup(opts: Parameters<typeof createAuthThrottle>[0] = {}) {
  let now = 1_000_000;
  const events: ThrottleEvent[] = [];
  const t = createAuthThrottle(opts, () => now, (e) => events.push(e));
  return {
    t,
    events,
    advance: (ms: number) => (now += ms),
    set: (ms: number) => (now = ms),
  };
}

const IP = { maxFailures: 3, windowMs: 10_000, lockoutMs: 1_000, maxLockoutMs: 5_000, forgetAfterMs: 60_000 };

describe('per-IP lockout', () => {
  it('locks an address after maxFailures within the window, for lockoutMs, and tells once', () => {
    const { t, events, advance } = setup({ ip: IP });
    t.failed('10.0.0.7');
    t.failed('10.0.0.7');
    expect(t.ipLocked('10.0.0.7')).toBe(false);
    t.failed('10.0.0.7');
    expect(t.ipLocked('10.0.0.7')).toBe(true);
    expect(t.ipLocked('10.0.0.8')).toBe(false);
    expect(events).toEqual([{ scope: 'ip', ip: '10.0.0.7', failures: 3, lockoutMs: 1_000 }]);
    advance(999);
    expect(t.ipLocked('10.0.0.7')).toBe(true);
    advance(1);
    expect(t.ipLocked('10.0.0.7')).toBe(false);
    expect(t.stats().lockouts).toEqual({ ip: 1, device: 0 });
  });

  it('failures spread wider than the window never lock', () => {
    const { t, advance } = setup({ ip: IP });
    for (let i = 0; i < 20; i++) {
      t.failed('10.0.0.7');
      advance(IP.windowMs / 2 + 1);
      if (i % 2 === 1) expect(t.ipLocked('10.0.0.7')).toBe(false);
    }
    expect(t.stats().lockouts.ip).toBe(0);
  });

  it('each repeat lockout doubles, up to maxLockoutMs; forgotten after forgetAfterMs without failures', () => {
    const { t, events, advance } = setup({ ip: IP });
    const lockOnce = (): number => {
      for (let i = 0; i < IP.maxFailures; i++) t.failed('10.0.0.7');
      const e = events.at(-1);
      if (e?.scope !== 'ip') throw new Error('no lockout');
      advance(e.lockoutMs);
      return e.lockoutMs;
    };
    expect([lockOnce(), lockOnce(), lockOnce(), lockOnce(), lockOnce()]).toEqual([1_000, 2_000, 4_000, 5_000, 5_000]);
    advance(IP.forgetAfterMs + 1);
    expect(lockOnce()).toBe(1_000);
  });

  it('an IPv4 client on a dual-stack socket is the same client', () => {
    expect(normalizeIp('::ffff:192.168.1.20')).toBe('192.168.1.20');
    expect(normalizeIp('fe80::1')).toBe('fe80::1');
    const { t } = setup({ ip: IP });
    t.failed('::ffff:10.0.0.7');
    t.failed('10.0.0.7');
    t.failed('::ffff:10.0.0.7');
    expect(t.ipLocked('10.0.0.7')).toBe(true);
    expect(t.ipLocked('::ffff:10.0.0.7')).toBe(true);
  });

  it('a failure without an address is not tracked by address', () => {
    const { t } = setup({ ip: IP });
    for (let i = 0; i < 10; i++) t.failed(undefined);
    expect(t.stats()).toEqual({ lockouts: { ip: 0, device: 0 }, active: { ip: 0, device: 0 } });
  });

  it('a clock going backwards neither locks forever nor unlocks early', () => {
    const { t, advance, set } = setup({ ip: IP });
    for (let i = 0; i < 3; i++) t.failed('10.0.0.7');
    expect(t.ipLocked('10.0.0.7')).toBe(true);
    set(0);
    t.failed('10.0.0.7');
    advance(1_000_000 + 1_000);
    expect(t.ipLocked('10.0.0.7')).toBe(false);
  });
});

describe('per-device-id rate limit (never a lockout)', () => {
  const DEV = { maxFailures: 3, windowMs: 10_000, verifyIntervalMs: 2_000 };

  it('below maxFailures every verification may run', () => {
    const { t } = setup({ device: DEV });
    t.failed('10.0.0.1', 'PGR-01');
    t.failed('10.0.0.2', 'PGR-01');
    for (let i = 0; i < 5; i++) expect(t.mayVerify('PGR-01')).toBe(true);
  });

  it('after maxFailures from any addresses: one verification per interval, and a window without failures ends it', () => {
    const { t, events, advance } = setup({ device: DEV });
    t.failed('10.0.0.1', 'PGR-01');
    t.failed('10.0.0.2', 'PGR-01');
    t.failed('10.0.0.3', 'PGR-01');
    expect(events).toEqual([{ scope: 'device', deviceId: 'PGR-01', failures: 3, verifyIntervalMs: 2_000 }]);
    expect(t.stats().active.device).toBe(1);
    expect(t.mayVerify('PGR-01')).toBe(false); // the slot opens verifyIntervalMs after the limit began
    expect(t.mayVerify('PGR-02')).toBe(true); // other devices are untouched
    advance(2_000);
    expect(t.mayVerify('PGR-01')).toBe(true);
    expect(t.mayVerify('PGR-01')).toBe(false);
    advance(1_999);
    expect(t.mayVerify('PGR-01')).toBe(false);
    advance(1);
    expect(t.mayVerify('PGR-01')).toBe(true);
    // No failure for a whole window: back to normal, no new event until it starts again.
    advance(DEV.windowMs + 1);
    for (let i = 0; i < 3; i++) expect(t.mayVerify('PGR-01')).toBe(true);
    expect(t.stats().active.device).toBe(0);
    expect(events).toHaveLength(1);
  });

  it('the device id is never locked out: a slot comes every interval however many failures there are', () => {
    const { t, advance } = setup({ device: DEV });
    let slots = 0;
    for (let i = 0; i < 1_000; i++) {
      t.failed(`10.0.${i % 250}.1`, 'PGR-01');
      if (t.mayVerify('PGR-01')) slots++;
      advance(100);
    }
    // 100 s of attack at 10 attempts a second: about one verification per 2 s, still some.
    expect(slots).toBeGreaterThanOrEqual(45);
    expect(slots).toBeLessThanOrEqual(52);
  });
});

describe('bounds and options', () => {
  it('tracks at most maxEntries addresses (the quietest goes first)', () => {
    const { t } = setup({ ip: IP, maxEntries: 100 });
    for (let i = 0; i < 3; i++) t.failed('10.9.9.9');
    for (let i = 0; i < 500; i++) t.failed(`10.1.${i >> 8}.${i & 255}`);
    // The locked address was the oldest and was evicted: the table did not grow past its bound.
    expect(t.ipLocked('10.9.9.9')).toBe(false);
    expect(t.stats().active.ip).toBe(0);
  });

  it('defaults are used when nothing is given, and nonsense is refused', () => {
    const { t } = setup();
    for (let i = 0; i < AUTH_THROTTLE_DEFAULTS.ip.maxFailures - 1; i++) t.failed('10.0.0.7');
    expect(t.ipLocked('10.0.0.7')).toBe(false);
    t.failed('10.0.0.7');
    expect(t.ipLocked('10.0.0.7')).toBe(true);
    expect(() => createAuthThrottle({ ip: { maxFailures: 0 } }, Date.now)).toThrow(/ip.maxFailures/);
    expect(() => createAuthThrottle({ device: { verifyIntervalMs: Number.NaN } }, Date.now)).toThrow(/verifyIntervalMs/);
  });

  it('a throwing event listener does not break the throttle', () => {
    const t = createAuthThrottle({ ip: IP }, () => 5, () => {
      throw new Error('logger down');
    });
    for (let i = 0; i < 3; i++) t.failed('10.0.0.7');
    expect(t.ipLocked('10.0.0.7')).toBe(true);
  });
});
