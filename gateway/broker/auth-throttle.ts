/**
 * Credential brute force (docs/SPEC-NOTES.md "Credential brute force"). Two different answers to
 * two different attackers:
 *
 * - **Per client IP, a lockout.** After `ip.maxFailures` failed CONNECTs within `ip.windowMs`,
 *   every CONNECT from that address is refused (CONNACK 5) without looking at its credentials, so
 *   no scrypt runs, for a lockout that doubles with each repeat (bounded by `ip.maxLockoutMs`) and
 *   is forgotten after `ip.forgetAfterMs` without failures.
 * - **Per device id, a rate limit, never a lockout.** A lockout by device id would let anyone who
 *   knows an SOS pager's id (it is printed on the label) keep that pager off the air. Instead, once
 *   a registered device id collects `device.maxFailures` wrong secrets within `device.windowMs`
 *   (from any address), its secret is verified at most once per `device.verifyIntervalMs`; other
 *   attempts are refused without scrypt. A correct secret still passes: the auth cache (an HMAC)
 *   is consulted before this limit, so a device that connected since start-up is never slowed, and
 *   one that did not gets a verification slot every interval.
 *
 * Bounded: at most `maxEntries` addresses and device ids each are tracked (the oldest first out).
 * Time is injected, so that the arithmetic is tested without sleeping.
 */

export interface AuthThrottleOptions {
  readonly ip?: {
    readonly maxFailures?: number;
    readonly windowMs?: number;
    readonly lockoutMs?: number;
    readonly maxLockoutMs?: number;
    readonly forgetAfterMs?: number;
  };
  readonly device?: {
    readonly maxFailures?: number;
    readonly windowMs?: number;
    readonly verifyIntervalMs?: number;
  };
  readonly maxEntries?: number;
}

export const AUTH_THROTTLE_DEFAULTS = {
  ip: { maxFailures: 10, windowMs: 60_000, lockoutMs: 30_000, maxLockoutMs: 15 * 60_000, forgetAfterMs: 60 * 60_000 },
  device: { maxFailures: 5, windowMs: 60_000, verifyIntervalMs: 2_000 },
  maxEntries: 10_000,
} as const;

/** A lockout (IP) or a rate limit (device id) that just began: logged once, counted. */
export type ThrottleEvent =
  | { readonly scope: 'ip'; readonly ip: string; readonly failures: number; readonly lockoutMs: number }
  | { readonly scope: 'device'; readonly deviceId: string; readonly failures: number; readonly verifyIntervalMs: number };

export interface AuthThrottleStats {
  /** Lockouts (IP) and rate limits (device id) begun since start. */
  readonly lockouts: { readonly ip: number; readonly device: number };
  /** Addresses locked out and device ids rate-limited right now. */
  readonly active: { readonly ip: number; readonly device: number };
}

export interface AuthThrottle {
  /** True while CONNECTs from this address are refused unread. */
  ipLocked(ip: string): boolean;
  /** A registered device's secret is about to be verified (scrypt): false when its id is rate-limited and its slot is taken. */
  mayVerify(deviceId: string): boolean;
  /** A refused CONNECT. `deviceId` only for a wrong secret of a registered device. */
  failed(ip: string | undefined, deviceId?: string): void;
  stats(): AuthThrottleStats;
}

interface IpEntry {
  failures: number;
  windowStart: number;
  lockedUntil: number;
  /** Lockouts so far (the next one lasts lockoutMs × 2^level). */
  level: number;
  lastFailure: number;
}

interface DeviceEntry {
  failures: number;
  windowStart: number;
  lastFailure: number;
  guarded: boolean;
  nextVerifyAt: number;
}

/** `::ffff:10.0.0.7` (an IPv4 client on a dual-stack socket) and `10.0.0.7` are one client. */
export function normalizeIp(ip: string): string {
  return ip.startsWith('::ffff:') && ip.includes('.') ? ip.slice(7) : ip;
}

function positive(what: string, v: number): number {
  if (!Number.isFinite(v) || v < 1) throw new RangeError(`auth throttle: ${what} must be a number ≥ 1, got ${v}`);
  return v;
}

export function createAuthThrottle(options: AuthThrottleOptions, clock: () => number, onEvent: (e: ThrottleEvent) => void = () => undefined): AuthThrottle {
  const D = AUTH_THROTTLE_DEFAULTS;
  const ip = {
    maxFailures: positive('ip.maxFailures', options.ip?.maxFailures ?? D.ip.maxFailures),
    windowMs: positive('ip.windowMs', options.ip?.windowMs ?? D.ip.windowMs),
    lockoutMs: positive('ip.lockoutMs', options.ip?.lockoutMs ?? D.ip.lockoutMs),
    maxLockoutMs: positive('ip.maxLockoutMs', options.ip?.maxLockoutMs ?? D.ip.maxLockoutMs),
    forgetAfterMs: positive('ip.forgetAfterMs', options.ip?.forgetAfterMs ?? D.ip.forgetAfterMs),
  };
  const dev = {
    maxFailures: positive('device.maxFailures', options.device?.maxFailures ?? D.device.maxFailures),
    windowMs: positive('device.windowMs', options.device?.windowMs ?? D.device.windowMs),
    verifyIntervalMs: positive('device.verifyIntervalMs', options.device?.verifyIntervalMs ?? D.device.verifyIntervalMs),
  };
  const maxEntries = positive('maxEntries', options.maxEntries ?? D.maxEntries);
  const ips = new Map<string, IpEntry>();
  const devices = new Map<string, DeviceEntry>();
  const lockouts = { ip: 0, device: 0 };

  /** Re-inserted on every update: a Map iterates oldest first, so eviction takes the quietest. */
  function touch<V>(map: Map<string, V>, key: string, value: V): void {
    map.delete(key);
    if (map.size >= maxEntries) {
      const oldest = map.keys().next();
      if (!oldest.done) map.delete(oldest.value);
    }
    map.set(key, value);
  }

  function emit(e: ThrottleEvent): void {
    // Bulkhead: a throwing logger must not turn a refusal into an authentication error.
    try {
      onEvent(e);
    } catch {
      // nothing to do: the refusal itself is counted by the caller
    }
  }

  function ipFailed(addr: string, now: number): void {
    let e = ips.get(addr);
    if (e && now - e.lastFailure > ip.forgetAfterMs && now >= e.lockedUntil) e = undefined;
    if (!e) e = { failures: 0, windowStart: now, lockedUntil: 0, level: 0, lastFailure: now };
    // A clock that went backwards starts a new window rather than never ending the old one.
    if (now - e.windowStart > ip.windowMs || now < e.windowStart) {
      e.failures = 0;
      e.windowStart = now;
    }
    e.failures++;
    e.lastFailure = now;
    if (e.failures >= ip.maxFailures && now >= e.lockedUntil) {
      const lockoutMs = Math.min(ip.maxLockoutMs, ip.lockoutMs * 2 ** Math.min(e.level, 30));
      e.lockedUntil = now + lockoutMs;
      e.level++;
      e.failures = 0;
      e.windowStart = now;
      lockouts.ip++;
      emit({ scope: 'ip', ip: addr, failures: ip.maxFailures, lockoutMs });
    }
    touch(ips, addr, e);
  }

  function deviceFailed(id: string, now: number): void {
    let e = devices.get(id);
    if (e && (now - e.lastFailure > dev.windowMs || now < e.lastFailure)) e = undefined;
    if (!e) e = { failures: 0, windowStart: now, lastFailure: now, guarded: false, nextVerifyAt: 0 };
    e.failures++;
    e.lastFailure = now;
    if (!e.guarded && e.failures >= dev.maxFailures) {
      e.guarded = true;
      e.nextVerifyAt = now + dev.verifyIntervalMs;
      lockouts.device++;
      emit({ scope: 'device', deviceId: id, failures: e.failures, verifyIntervalMs: dev.verifyIntervalMs });
    }
    touch(devices, id, e);
  }

  /** A device id stays rate-limited until a whole window passed without a wrong secret. */
  function guardOf(id: string, now: number): DeviceEntry | undefined {
    const e = devices.get(id);
    if (!e?.guarded) return undefined;
    if (now - e.lastFailure > dev.windowMs || now < e.lastFailure) {
      devices.delete(id);
      return undefined;
    }
    return e;
  }

  return {
    ipLocked(addr) {
      const e = ips.get(normalizeIp(addr));
      return e !== undefined && clock() < e.lockedUntil;
    },
    mayVerify(id) {
      const now = clock();
      const e = guardOf(id, now);
      if (!e) return true;
      if (now < e.nextVerifyAt) return false;
      e.nextVerifyAt = now + dev.verifyIntervalMs;
      return true;
    },
    failed(addr, deviceId) {
      const now = clock();
      if (addr !== undefined && addr !== '') ipFailed(normalizeIp(addr), now);
      if (deviceId !== undefined) deviceFailed(deviceId, now);
    },
    stats() {
      const now = clock();
      let lockedIps = 0;
      for (const e of ips.values()) if (now < e.lockedUntil) lockedIps++;
      let guarded = 0;
      for (const e of devices.values()) if (e.guarded && now - e.lastFailure <= dev.windowMs) guarded++;
      return { lockouts: { ...lockouts }, active: { ip: lockedIps, device: guarded } };
    },
  };
}
