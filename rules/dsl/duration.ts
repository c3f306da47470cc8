/**
 * Durations, the one grammar of gridedge.yaml, the device CSV and rule files (SPEC §11): a number
 * and a unit, `500ms`, `5s`, `2m`, `1h`, `35d`, or several (`1h30m`). It lives here because rules/
 * may not import gateway/; gateway/config/duration.ts builds its zod field on it.
 * A bare number is refused: `for: 5` could be 5 ms or 5 s.
 */
const UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
type Unit = keyof typeof UNIT_MS;

const WHOLE = /^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+$/;
const PART = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/g;

export const DURATION_HINT = 'a duration is a number and a unit: 500ms, 5s, 2m, 1h, 35d';

/** Milliseconds, or undefined when `text` is not a duration (or not a whole number of ms). */
export function parseDuration(text: string): number | undefined {
  const s = text.trim();
  if (!WHOLE.test(s)) return undefined;
  let ms = 0;
  for (const m of s.matchAll(PART)) ms += Number(m[1]) * UNIT_MS[m[2] as Unit];
  return Number.isSafeInteger(ms) ? ms : undefined;
}

/** The largest exact unit: `300000` → `5m`, `1500` → `1500ms`. */
export function formatDuration(ms: number): string {
  for (const unit of ['d', 'h', 'm', 's'] as const) {
    const size = UNIT_MS[unit];
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

const MULTIPLE = /^(\d+(?:\.\d+)?)x$/;

/** `2x` → 2 (for `silentFor`: a multiple of the device's heartbeat), else undefined. */
export function parseHeartbeatMultiple(text: string): number | undefined {
  const m = MULTIPLE.exec(text.trim());
  if (!m) return undefined;
  const n = Number(m[1]);
  return n > 0 && Number.isFinite(n) ? n : undefined;
}
