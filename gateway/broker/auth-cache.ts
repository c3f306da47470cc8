import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * Remembers successful secret verifications so that a reconnect storm (10k devices after a
 * gateway or network restart) costs an HMAC each instead of ~15 ms of scrypt each.
 *
 * It never holds a plain secret: an entry is HMAC-SHA256(per-process random key, device id ‖
 * secret) beside the stored hash it was verified against. A changed hash (new secret in the
 * registry) no longer matches, so the old secret stops working at once. The key dies with the
 * process; a memory dump yields values that are useless anywhere else.
 */
export interface AuthCache {
  /** True when this secret was verified for this device against this very hash. */
  check(deviceId: string, secretHash: string, secret: Buffer): boolean;
  remember(deviceId: string, secretHash: string, secret: Buffer): void;
  forget(deviceId: string): void;
  size(): number;
}

interface Entry {
  readonly hash: string;
  readonly mac: Buffer;
}

export function createAuthCache(maxEntries = 50_000): AuthCache {
  const key = randomBytes(32);
  const entries = new Map<string, Entry>();
  const mac = (deviceId: string, secret: Buffer): Buffer =>
    createHmac('sha256', key).update(deviceId).update('\0').update(secret).digest();

  return {
    check(deviceId, secretHash, secret) {
      const e = entries.get(deviceId);
      if (!e) return false;
      if (e.hash !== secretHash) {
        entries.delete(deviceId);
        return false;
      }
      return timingSafeEqual(e.mac, mac(deviceId, secret));
    },
    remember(deviceId, secretHash, secret) {
      entries.delete(deviceId);
      if (entries.size >= maxEntries) {
        // Oldest first (a Map iterates in insertion order): bounded, and a device that keeps
        // reconnecting stays at the young end.
        const oldest = entries.keys().next();
        if (!oldest.done) entries.delete(oldest.value);
      }
      entries.set(deviceId, { hash: secretHash, mac: mac(deviceId, secret) });
    },
    forget(deviceId) {
      entries.delete(deviceId);
    },
    size() {
      return entries.size;
    },
  };
}
