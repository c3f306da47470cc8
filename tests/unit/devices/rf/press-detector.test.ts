import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { rfIdToHex } from '../../../../devices/rf/frame-parser.js';
import { createPressDetector, RF_KEY_SOS, RF_MAX_TRACKED_CODES } from '../../../../devices/rf/press-detector.js';

const word = (id: string, key: number) => ({ id, key, code: (Number.parseInt(id, 16) << 4) | key });
const SOS = word('5A3C1', RF_KEY_SOS);
const SERVICE = word('5A3C1', 0x2);
const CANCEL = word('5A3C1', 0x8);

describe('rf press detector', () => {
  it('a non-sos key emits on its first word; its repeats fold into that press', () => {
    const d = createPressDetector();
    expect(d.push(SERVICE, 1000)).toEqual([{ id: '5A3C1', key: 0x2, words: 1, at: 1000 }]);
    expect(d.push(SERVICE, 1040)).toEqual([]);
    expect(d.push(SERVICE, 1080)).toEqual([]);
    expect(d.counters).toMatchObject({ words: 3, presses: 1 });
  });

  it('the window is inclusive: a repeat exactly 1500 ms after the previous word still folds', () => {
    const d = createPressDetector();
    expect([...d.push(SERVICE, 0), ...d.push(SERVICE, 1500)]).toHaveLength(1);
  });

  it('1499 ms folds, 1501 ms is a new press (non-sos)', () => {
    const folded = createPressDetector();
    expect([...folded.push(SERVICE, 0), ...folded.push(SERVICE, 1499)]).toHaveLength(1);
    const split = createPressDetector();
    expect([...split.push(SERVICE, 0), ...split.push(SERVICE, 1501)].map((p) => p.at)).toEqual([0, 1501]);
  });

  it('sos: emitted on the second word within 1499 ms, at the first word’s time', () => {
    const d = createPressDetector();
    expect(d.push(SOS, 0)).toEqual([]);
    expect(d.push(SOS, 1499)).toEqual([{ id: '5A3C1', key: RF_KEY_SOS, words: 2, at: 0 }]);
    expect(d.push(SOS, 1540)).toEqual([]);
    expect(d.counters).toMatchObject({ presses: 1, straySos: 0 });
  });

  it('sos: two words 1501 ms apart are two stray words, no sos', () => {
    const d = createPressDetector();
    expect([...d.push(SOS, 0), ...d.push(SOS, 1501)]).toEqual([]);
    expect(d.counters.straySos).toBe(1);
    d.expire(1501 + 1501);
    expect(d.counters.straySos).toBe(2);
    expect(d.size).toBe(0);
  });

  it('sos pressed again after the window is a second sos', () => {
    const d = createPressDetector();
    const presses = [0, 40, 80, 3000, 3040, 3080].flatMap((t) => d.push(SOS, t));
    expect(presses.map((p) => p.at)).toEqual([0, 3000]);
  });

  it('the window slides: a button held for 10 s is one press', () => {
    const d = createPressDetector();
    const presses = Array.from({ length: 11 }, (_, i) => i * 1000).flatMap((t) => d.push(SOS, t));
    expect(presses).toEqual([{ id: '5A3C1', key: RF_KEY_SOS, words: 2, at: 0 }]);
  });

  it('codes are independent: other keys and other pagers do not fold with an sos or complete it', () => {
    const d = createPressDetector();
    const other = word('5A3C2', RF_KEY_SOS);
    const presses = [
      ...d.push(SOS, 0),
      ...d.push(CANCEL, 10),
      ...d.push(other, 20),
      ...d.push(SERVICE, 30),
      ...d.push(SOS, 40),
    ];
    expect(presses.map((p) => [p.id, p.key])).toEqual([
      ['5A3C1', 0x8],
      ['5A3C1', 0x2],
      ['5A3C1', RF_KEY_SOS],
    ]);
  });

  it('a custom window', () => {
    const d = createPressDetector({ windowMs: 100 });
    expect([...d.push(SERVICE, 0), ...d.push(SERVICE, 101)]).toHaveLength(2);
  });

  it('a clock step backwards of more than the window starts a new press, so it cannot swallow an sos', () => {
    const d = createPressDetector();
    d.push(SOS, 100_000);
    d.push(SOS, 100_040);
    expect([...d.push(SOS, 10_000), ...d.push(SOS, 10_040)]).toHaveLength(1);
  });

  it('rejects nonsense options', () => {
    expect(() => createPressDetector({ windowMs: Number.NaN })).toThrow(RangeError);
    expect(() => createPressDetector({ maxCodes: 0 })).toThrow(RangeError);
  });

  it('memory: state is pruned once its window passes, under a flood of distinct codes', () => {
    const d = createPressDetector();
    // 100 000 distinct codes, one every 10 ms: at most 151 can be inside one 1.5 s window.
    let maxSize = 0;
    for (let i = 0; i < 100_000; i++) {
      d.push(word(rfIdToHex(i), i % 2 === 0 ? RF_KEY_SOS : 0x2), i * 10);
      maxSize = Math.max(maxSize, d.size);
    }
    expect(maxSize).toBe(151);
    d.expire(100_000 * 10 + 1500);
    expect(d.size).toBe(0);
    expect(d.counters.straySos).toBe(50_000);
    expect(d.counters.evicted).toBe(0);
  });

  it('memory: maxCodes caps the state even when every word arrives at the same instant', () => {
    const d = createPressDetector();
    for (let i = 0; i < 5 * RF_MAX_TRACKED_CODES; i++) d.push(word(rfIdToHex(i), 0x2), 0);
    expect(d.size).toBe(RF_MAX_TRACKED_CODES);
    expect(d.counters.evicted).toBe(4 * RF_MAX_TRACKED_CODES);
  });

  it('an sos evicted after its first word still fires on the next two', () => {
    const d = createPressDetector({ maxCodes: 2 });
    d.push(SOS, 0);
    d.push(word('00001', 2), 1);
    d.push(word('00002', 2), 2); // evicts the sos
    expect(d.push(SOS, 40)).toEqual([]);
    expect(d.push(SOS, 80)).toEqual([{ id: '5A3C1', key: RF_KEY_SOS, words: 2, at: 40 }]);
  });

  it('property: same-code words at increasing times: presses match a reference model', () => {
    // Reference: split the times into bursts at gaps > 1500 ms; a non-sos burst is one press at its
    // start; an sos burst is one press at its start when it has ≥ 2 words, else nothing.
    fc.assert(
      fc.property(fc.boolean(), fc.array(fc.integer({ min: 0, max: 3000 }), { maxLength: 40 }), (isSos, gaps) => {
        const w = isSos ? SOS : SERVICE;
        const times: number[] = [];
        let t = 0;
        for (const g of gaps) times.push((t += g));
        const bursts: number[][] = [];
        for (const [i, time] of times.entries()) {
          const prev = times[i - 1];
          if (prev === undefined || time - prev > 1500) bursts.push([time]);
          else bursts.at(-1)?.push(time);
        }
        const expected = bursts.filter((b) => !isSos || b.length >= 2).map((b) => b[0]);
        const d = createPressDetector();
        expect(times.flatMap((time) => d.push(w, time)).map((p) => p.at)).toEqual(expected);
        expect(d.size).toBeLessThanOrEqual(1);
      }),
    );
  });
});
