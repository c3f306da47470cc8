/**
 * "Logged once per device per minute" (SPEC §3): a flood of refusals from one device must not
 * become a flood of log lines. Bounded: when more keys than `maxKeys` are tracked (a scan with
 * thousands of made-up ids), the table is cleared, which at worst logs one extra line per key.
 */
export interface LogThrottle {
  /** True when `key` may be logged now; also returns how many were suppressed since the last time. */
  allow(key: string): { ok: true; suppressed: number } | { ok: false };
}

export function createLogThrottle(clock: () => number, windowMs = 60_000, maxKeys = 10_000): LogThrottle {
  const seen = new Map<string, { at: number; suppressed: number }>();
  return {
    allow(key) {
      const now = clock();
      const e = seen.get(key);
      // (A wall clock stepped back, now < e.at, ends the window: not an hour of silence.)
      if (e && now >= e.at && now - e.at < windowMs) {
        e.suppressed++;
        return { ok: false };
      }
      if (!e && seen.size >= maxKeys) seen.clear();
      const suppressed = e?.suppressed ?? 0;
      seen.set(key, { at: now, suppressed: 0 });
      return { ok: true, suppressed };
    },
  };
}
