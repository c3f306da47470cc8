import { describe, expect, it } from 'vitest';
import { createWallClock, STEP_TOLERANCE_MS } from '../../../gateway/wall-clock.js';

// gateway/wall-clock.ts: a step is the wall clock moving more or less than the monotonic clock
// between two readings; `steps()` sums them (docs/SPEC-NOTES.md "Clock steps").

const T0 = Date.UTC(2024, 11, 4, 2, 0, 0);
const HOUR = 3_600_000;

function sources() {
  const s = { wall: T0, mono: 5_000.25 };
  return {
    s,
    /** Real time passes: both clocks move. */
    pass(ms: number) {
      s.wall += ms;
      s.mono += ms;
    },
    /** NTP steps the wall clock. */
    step(ms: number) {
      s.wall += ms;
    },
    wall: () => s.wall,
    monotonic: () => s.mono,
  };
}

describe('wall clock steps', () => {
  it('sees none while both clocks run together, over short and long gaps', () => {
    const src = sources();
    const clock = createWallClock({ wall: src.wall, monotonic: src.monotonic });
    for (const ms of [0, 1, 250, 60_000, 24 * HOUR]) {
      src.pass(ms);
      expect(clock.now()).toBe(src.s.wall);
    }
    expect(clock.steps()).toBe(0);
  });

  it('lets slewing (NTP’s gradual correction) and sub-tolerance jitter flow into wall time', () => {
    const src = sources();
    const clock = createWallClock({ wall: src.wall, monotonic: src.monotonic });
    for (let i = 0; i < 4 * 3_600; i++) {
      src.pass(250);
      src.s.wall += 0.125; // 0.5 ms/s, the kernel's maximum slew rate
      clock.now();
    }
    src.step(STEP_TOLERANCE_MS); // exactly the tolerance: not a step
    expect(clock.steps()).toBe(0);
  });

  it('sums forward and backward steps, tells each once with the wall time after it, and goes on from there', () => {
    const src = sources();
    const told: [number, number][] = [];
    const clock = createWallClock({ wall: src.wall, monotonic: src.monotonic, onStep: (ms, at) => told.push([ms, at]) });
    src.pass(1_000);
    src.step(+HOUR);
    src.pass(250);
    expect(clock.now()).toBe(T0 + 1_250 + HOUR);
    expect(clock.steps()).toBe(HOUR);
    src.pass(10_000);
    src.step(-2 * HOUR);
    expect(clock.steps()).toBe(-HOUR);
    src.pass(10_000);
    expect(clock.steps()).toBe(-HOUR);
    expect(told).toEqual([
      [HOUR, T0 + 1_250 + HOUR],
      [-2 * HOUR, T0 + 11_250 - HOUR],
    ]);
    // Wall time less the steps advanced exactly as the monotonic clock did.
    expect(clock.now() - clock.steps()).toBe(T0 + 21_250);
  });

  it('uses Date.now and performance.now by default', () => {
    const clock = createWallClock();
    expect(Math.abs(clock.now() - Date.now())).toBeLessThan(1_000);
    expect(clock.steps()).toBe(0);
  });
});
