/**
 * The gateway's wall clock, watched for steps (docs/SPEC-NOTES.md "Clock steps").
 *
 * Readings and incidents are stamped with wall time (what people read), but NTP may step the
 * wall clock by minutes or hours at any moment. Every reading of the clock compares how far the
 * wall clock moved with how far the monotonic clock moved since the previous reading; a
 * difference beyond `toleranceMs` is a step. `steps()` is the sum of the steps seen so far
 * (ms, positive forward): `now() - steps()` advances with the monotonic clock, which is what
 * the rule engine and the incident manager measure durations on. Slewing (NTP's gradual
 * correction, at most 0.5 ms/s) stays far below the tolerance between two readings and just
 * flows into wall time.
 */
export interface WallClock {
  /** Wall-clock ms since the epoch. */
  readonly now: () => number;
  /** The wall-clock steps seen since this clock was made, summed (ms; positive: forward). */
  readonly steps: () => number;
}

export interface WallClockOptions {
  /** Default Date.now. */
  readonly wall?: () => number;
  /** Any clock that only moves forward at the real rate, ms. Default performance.now. */
  readonly monotonic?: () => number;
  /** A disagreement larger than this between two readings is a step. Default 1000 ms. */
  readonly toleranceMs?: number;
  /** Told of each step (ms, positive forward) and the wall time after it. */
  readonly onStep?: (stepMs: number, wallNow: number) => void;
}

export const STEP_TOLERANCE_MS = 1_000;

export function createWallClock(options: WallClockOptions = {}): WallClock {
  const wall = options.wall ?? Date.now;
  const monotonic = options.monotonic ?? (() => performance.now());
  const tolerance = options.toleranceMs ?? STEP_TOLERANCE_MS;
  let lastWall = wall();
  let lastMono = monotonic();
  let total = 0;

  const sample = (): number => {
    const w = wall();
    const m = monotonic();
    const step = Math.round(w - lastWall - (m - lastMono));
    lastWall = w;
    lastMono = m;
    if (Math.abs(step) > tolerance) {
      total += step;
      options.onStep?.(step, w);
    }
    return w;
  };

  return {
    now: sample,
    steps: () => {
      sample();
      return total;
    },
  };
}
