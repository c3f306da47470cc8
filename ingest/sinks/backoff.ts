/** Retry delays for a sink that is down (SPEC §5: "retry with backoff and jitter"). */
export interface BackoffOptions {
  /** Delay before the first retry, ms. Default 500. */
  readonly initialMs: number;
  /** Ceiling of every delay, jitter included, ms. Default 30 000. */
  readonly maxMs: number;
  /** Spread around the exponential delay: 0.2 means ±20 %. Default 0.2, within [0, 1]. */
  readonly jitter: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = Object.freeze({ initialMs: 500, maxMs: 30_000, jitter: 0.2 });

/**
 * The delay before retry number `attempt` (1 = the first retry): `initialMs · 2^(attempt-1)`,
 * capped at `maxMs`, times a factor drawn uniformly from [1 - jitter, 1 + jitter] with `random()`
 * in [0, 1), capped at `maxMs` again. Jitter keeps gateways that lost the same server from
 * retrying in lockstep when it comes back.
 */
export function backoffDelay(attempt: number, options: BackoffOptions, random: () => number): number {
  const exponent = Math.max(0, Math.floor(attempt) - 1);
  // 2^exponent overflows to Infinity long before it matters; min() keeps it finite.
  const base = Math.min(options.maxMs, options.initialMs * 2 ** Math.min(exponent, 52));
  const r = Math.min(1, Math.max(0, random()));
  const factor = 1 - options.jitter + 2 * options.jitter * r;
  return Math.round(Math.min(options.maxMs, base * factor));
}

/** Checks backoff options eagerly, with a message that names the bad field (pino style). */
export function resolveBackoff(input: Partial<BackoffOptions> | undefined): BackoffOptions {
  const options = { ...DEFAULT_BACKOFF, ...dropUndefined(input ?? {}) };
  if (!Number.isFinite(options.initialMs) || options.initialMs <= 0) {
    throw new RangeError(`sink runner: backoff.initialMs must be a positive number of ms, got ${String(options.initialMs)}`);
  }
  if (!Number.isFinite(options.maxMs) || options.maxMs < options.initialMs) {
    throw new RangeError(`sink runner: backoff.maxMs must be a number of ms ≥ backoff.initialMs (${options.initialMs}), got ${String(options.maxMs)}`);
  }
  if (!Number.isFinite(options.jitter) || options.jitter < 0 || options.jitter > 1) {
    throw new RangeError(`sink runner: backoff.jitter must be within [0, 1], got ${String(options.jitter)}`);
  }
  return Object.freeze(options);
}

function dropUndefined<T extends object>(obj: T): Partial<T> {
  return Object.fromEntries(Object.entries(obj).filter(([, v]) => v !== undefined)) as Partial<T>;
}
