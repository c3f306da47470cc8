import { z } from 'zod';

/**
 * Durations in config and CSV (SPEC §11): a number and a unit, `500ms`, `5s`, `2m`, `1h`, `30d`,
 * or several of them (`1h30m`). Stored in milliseconds.
 *
 * A bare number is refused on purpose: `timeout: 300` could mean 300 ms or 300 s, and on a
 * life-safety gateway a silent guess is worse than an error at start-up.
 */
const UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
type Unit = keyof typeof UNIT_MS;

const WHOLE = /^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+$/;
const PART = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/g;

export const DURATION_HINT = 'a duration is a number and a unit: 500ms, 5s, 2m, 1h, 30d';

/** Milliseconds, or undefined when `text` is not a duration (or not a whole number of ms). */
export function parseDuration(text: string): number | undefined {
  const s = text.trim();
  if (!WHOLE.test(s)) return undefined;
  let ms = 0;
  for (const m of s.matchAll(PART)) ms += Number(m[1]) * UNIT_MS[m[2] as Unit];
  // 1.5s is fine; 0.5ms is not a thing a timer can do.
  return Number.isSafeInteger(ms) ? ms : undefined;
}

/** Formats milliseconds back into the largest exact unit (`300000` → `5m`), for summaries and the CSV writer. */
export function formatDuration(ms: number): string {
  for (const unit of ['d', 'h', 'm', 's'] as const) {
    const size = UNIT_MS[unit];
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

export interface DurationOptions {
  /** Smallest allowed value in ms (default 1: most durations must be positive). */
  readonly min?: number;
  readonly max?: number;
}

/** A zod field that takes a duration string and gives milliseconds. */
export function duration(options: DurationOptions = {}) {
  const min = options.min ?? 1;
  const max = options.max ?? Number.MAX_SAFE_INTEGER;
  return z
    .string({ error: (iss) => (typeof iss.input === 'number' ? `${DURATION_HINT} (a bare number has no unit)` : undefined) })
    .transform((text, ctx) => {
      const ms = parseDuration(text);
      if (ms === undefined) {
        ctx.addIssue({ code: 'custom', message: `"${text}" is not a duration: ${DURATION_HINT}` });
        return z.NEVER;
      }
      if (ms < min || ms > max) {
        const range = max === Number.MAX_SAFE_INTEGER ? `at least ${formatDuration(min)}` : `between ${formatDuration(min)} and ${formatDuration(max)}`;
        ctx.addIssue({ code: 'custom', message: `duration must be ${range}` });
        return z.NEVER;
      }
      return ms;
    });
}
