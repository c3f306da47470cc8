/**
 * Time for the sink runner, injected so that batching windows and backoff are tested without
 * sleeping (STYLE.md). `now()` is wall-clock ms (it goes into health); the timers are the only way
 * the runner waits.
 */
export interface SinkClock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemClock: SinkClock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};
