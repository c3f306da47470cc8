import { z } from 'zod';
import { DURATION_HINT, formatDuration, parseDuration } from '../../rules/dsl/duration.js';

/**
 * Durations in config and CSV (SPEC §11): a number and a unit, `500ms`, `5s`, `2m`, `1h`, `30d`,
 * or several of them (`1h30m`). Stored in milliseconds. The grammar is rules/dsl/duration.ts.
 *
 * A bare number is refused on purpose: `timeout: 300` could mean 300 ms or 300 s, and on a
 * life-safety gateway a silent guess is worse than an error at start-up.
 */

export { DURATION_HINT, formatDuration, parseDuration };

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
