import { describe, expect, it } from 'vitest';
import { createProgress, formatSummary } from '../../../simulators/progress.js';

function sink(isTTY: boolean | undefined, columns?: number) {
  const writes: string[] = [];
  return { writes, out: { ...(isTTY === undefined ? {} : { isTTY }), ...(columns === undefined ? {} : { columns }), write: (t: string) => writes.push(t) } };
}

describe('progress line', () => {
  it('writes nothing at all when the output is not a TTY', () => {
    for (const isTTY of [false, undefined]) {
      const { writes, out } = sink(isTTY);
      const p = createProgress(out, { minIntervalMs: 0 });
      p.update('sent 10');
      p.update('sent 20', true);
      p.done();
      expect(p.active).toBe(false);
      expect(writes).toEqual([]);
    }
  });

  it('redraws one line in place on a TTY and clears it when done', () => {
    const { writes, out } = sink(true);
    let now = 0;
    const p = createProgress(out, { minIntervalMs: 100, now: () => now });
    p.update('sent 10');
    now = 50;
    p.update('sent 15'); // throttled
    now = 150;
    p.update('sent 20');
    p.update('sent 21', true);
    p.done();
    p.done();
    expect(writes).toEqual(['\rsent 10\u001b[K', '\rsent 20\u001b[K', '\rsent 21\u001b[K', '\r\u001b[K']);
    expect(writes.join('')).not.toContain('\n');
  });

  it('cuts the line to the terminal width so that it never wraps', () => {
    const { writes, out } = sink(true, 10);
    createProgress(out).update('0123456789abcdef');
    expect(writes).toEqual(['\r01234567…\u001b[K']);
  });

  it('prints an aligned summary', () => {
    expect(
      formatSummary('summary', [
        ['sent', 1000],
        ['PUBACK latency', 'p50 0.2 ms'],
      ]),
    ).toBe('summary\n  sent            1000\n  PUBACK latency  p50 0.2 ms\n');
  });
});
