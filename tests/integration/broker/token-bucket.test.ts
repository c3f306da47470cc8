import { describe, expect, it } from 'vitest';
import { createRateLimiter } from '../../../gateway/broker/token-bucket.js';

// Pure logic with an injected clock (a unit test; it lives beside the broker's integration tests
// because this folder is the broker's).
function limiter(perSecond = 20, burst = 100) {
  let now = 1_000_000;
  const l = createRateLimiter({ perSecond, burst }, () => now);
  return { l, advance: (ms: number) => (now += ms), set: (t: number) => (now = t) };
}

const takeN = (take: () => boolean, n: number): number => {
  let ok = 0;
  for (let i = 0; i < n; i++) if (take()) ok++;
  return ok;
};

describe('token bucket', () => {
  it('starts full: a burst of 100 passes, the 101st is over', () => {
    const { l } = limiter();
    expect(takeN(() => l.take('a'), 100)).toBe(100);
    expect(l.take('a')).toBe(false);
  });

  it('refills at perSecond: 50 ms → one token at 20/s', () => {
    const { l, advance } = limiter();
    takeN(() => l.take('a'), 100);
    advance(49);
    expect(l.take('a')).toBe(false);
    advance(1);
    expect(l.take('a')).toBe(true);
    expect(l.take('a')).toBe(false);
  });

  it('sustains exactly perSecond over a long run', () => {
    const { l, advance } = limiter();
    takeN(() => l.take('a'), 100);
    let ok = 0;
    for (let i = 0; i < 10_000; i++) {
      advance(1); // 10 s, one attempt per ms
      if (l.take('a')) ok++;
    }
    expect(ok).toBe(200);
  });

  it('never holds more than the burst, however long it idles', () => {
    const { l, advance } = limiter(20, 5);
    l.take('a');
    advance(3_600_000);
    expect(takeN(() => l.take('a'), 10)).toBe(5);
  });

  it('keeps one bucket per key', () => {
    const { l } = limiter(1, 2);
    expect(takeN(() => l.take('a'), 3)).toBe(2);
    expect(takeN(() => l.take('b'), 3)).toBe(2);
    expect(l.size()).toBe(2);
    l.forget('a');
    expect(l.size()).toBe(1);
    expect(l.take('a')).toBe(true); // a fresh, full bucket
  });

  it('a clock going backwards refills nothing and does not throw', () => {
    const { l, set } = limiter(20, 2);
    takeN(() => l.take('a'), 2);
    set(0);
    expect(l.take('a')).toBe(false);
    set(1_000_000 + 50);
    expect(l.take('a')).toBe(true);
  });

  it('refuses a nonsense configuration', () => {
    expect(() => createRateLimiter({ perSecond: 0, burst: 10 }, () => 0)).toThrow(RangeError);
    expect(() => createRateLimiter({ perSecond: 10, burst: 0 }, () => 0)).toThrow(RangeError);
  });
});
