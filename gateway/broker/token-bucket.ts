/**
 * Per-device token buckets for the telemetry rate limit (SPEC §3: 20 msg/s, burst 100). Time is
 * injected so that the refill arithmetic is tested without sleeping.
 */
export interface RateLimit {
  readonly perSecond: number;
  readonly burst: number;
}

/** Two numbers a device: what a bucket costs is what 10k devices cost. */
interface Bucket {
  tokens: number;
  at: number;
}

export interface RateLimiter {
  /** Takes one token from `key`'s bucket; false when the bucket is empty (the message is over the limit). */
  take(key: string): boolean;
  /** Forgets a key's bucket (a device that left the registry). */
  forget(key: string): void;
  size(): number;
}

export function createRateLimiter(limit: RateLimit, clock: () => number): RateLimiter {
  if (!(limit.perSecond > 0) || !(limit.burst >= 1)) {
    throw new RangeError(`rate limit needs perSecond > 0 and burst >= 1, got ${limit.perSecond}/s burst ${limit.burst}`);
  }
  const perMs = limit.perSecond / 1000;
  const buckets = new Map<string, Bucket>();
  return {
    take(key) {
      const now = clock();
      let b = buckets.get(key);
      if (!b) {
        b = { tokens: limit.burst, at: now };
        buckets.set(key, b);
      } else if (now > b.at) {
        b.tokens = Math.min(limit.burst, b.tokens + (now - b.at) * perMs);
        b.at = now;
      } else {
        // A clock that goes backwards refills nothing rather than draining the bucket, and
        // refilling goes on from the new time (not only once the clock is back where it was).
        b.at = now;
      }
      if (b.tokens >= 1) {
        b.tokens -= 1;
        return true;
      }
      return false;
    },
    forget(key) {
      buckets.delete(key);
    },
    size() {
      return buckets.size;
    },
  };
}
