import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { hexToBytes } from '../../../../devices/fixtures.js';
import {
  createRfFrameParser,
  encodeRfFrame,
  RF_FRAME_LENGTH,
  type RfFrameParser,
  type RfWord,
} from '../../../../devices/rf/frame-parser.js';

// SPEC §4.3 example.
const EXAMPLE = hexToBytes('AA A4 2A 62 01 5E 04 1A 5A 3C 11 55');
const EXAMPLE_WORD: RfWord = { sync: 0x2a62, low: 0x015e, high: 0x041a, code: 0x5a3c11, id: '5A3C1', key: 0x1 };

function feed(parser: RfFrameParser, ...chunks: Uint8Array[]): RfWord[] {
  return chunks.flatMap((c) => parser.push(c));
}

/** bytes in = 12 × frames + skipped + rejected + pending: no byte is lost or counted twice. */
function expectAccounted(parser: RfFrameParser, bytesIn: number): void {
  const c = parser.counters;
  expect(RF_FRAME_LENGTH * c.frames + c.skippedBytes + c.rejectedCandidates + parser.pendingBytes).toBe(bytesIn);
}

describe('rf frame parser', () => {
  it('parses the SPEC §4.3 example: id 5A3C1, key 0x1', () => {
    const parser = createRfFrameParser();
    expect(parser.push(EXAMPLE)).toEqual([EXAMPLE_WORD]);
    expect(parser.pendingBytes).toBe(0);
    expect(parser.counters).toEqual({ frames: 1, skippedBytes: 0, rejectedCandidates: 0 });
  });

  it('encodeRfFrame is the inverse of parsing', () => {
    expect(encodeRfFrame(EXAMPLE_WORD)).toEqual(Buffer.from(EXAMPLE));
    expect(() => encodeRfFrame({ ...EXAMPLE_WORD, code: 0x1000000 })).toThrow(RangeError);
  });

  it('pads the id to 5 hex digits and reads keys 0..F', () => {
    const parser = createRfFrameParser();
    const words = feed(parser, encodeRfFrame({ sync: 1, low: 2, high: 3, code: 0x00001f }), encodeRfFrame({ sync: 0, low: 0, high: 0, code: 0xfffffe }));
    expect(words.map((w) => [w.id, w.key])).toEqual([
      ['00001', 0xf],
      ['FFFFF', 0xe],
    ]);
  });

  it.each(Array.from({ length: RF_FRAME_LENGTH - 1 }, (_, i) => i + 1))('assembles a frame split after byte %i', (at) => {
    const parser = createRfFrameParser();
    expect(parser.push(EXAMPLE.subarray(0, at))).toEqual([]);
    expect(parser.pendingBytes).toBe(at);
    expect(parser.push(EXAMPLE.subarray(at))).toEqual([EXAMPLE_WORD]);
    expect(parser.pendingBytes).toBe(0);
    expect(parser.counters.skippedBytes + parser.counters.rejectedCandidates).toBe(0);
  });

  it('assembles a frame fed one byte at a time, and two frames in one chunk', () => {
    const parser = createRfFrameParser();
    const words = feed(parser, ...[...EXAMPLE].map((b) => Uint8Array.of(b)));
    expect(words).toEqual([EXAMPLE_WORD]);
    expect(parser.push(Buffer.concat([EXAMPLE, EXAMPLE]))).toEqual([EXAMPLE_WORD, EXAMPLE_WORD]);
  });

  it('skips garbage before, between and after frames and counts it', () => {
    const parser = createRfFrameParser();
    const garbage = hexToBytes('00 FF 55 A4 AA 13 AA');
    const words = feed(parser, garbage, EXAMPLE, hexToBytes('AA 00 55'), EXAMPLE, hexToBytes('01 02'));
    expect(words).toEqual([EXAMPLE_WORD, EXAMPLE_WORD]);
    // 7 + 3 + 2 garbage bytes, none of them an AA A4 candidate.
    expect(parser.counters).toEqual({ frames: 2, skippedBytes: 12, rejectedCandidates: 0 });
    expect(parser.pendingBytes).toBe(0);
  });

  it('a lone AA at the end of a read is kept: it may start a frame', () => {
    const parser = createRfFrameParser();
    expect(parser.push(hexToBytes('00 AA'))).toEqual([]);
    expect(parser.pendingBytes).toBe(1);
    expect(parser.push(EXAMPLE.subarray(1))).toEqual([EXAMPLE_WORD]);
  });

  it('a bad candidate (no 55 at byte 11) that hides the start of a real frame does not lose it', () => {
    // AA A4 01 02 + the example: the candidate at 0 has byte 11 = 0x1A (inside the real frame).
    const bytes = Buffer.concat([hexToBytes('AA A4 01 02'), EXAMPLE]);
    for (let split = 0; split <= bytes.length; split++) {
      const parser = createRfFrameParser();
      expect(feed(parser, bytes.subarray(0, split), bytes.subarray(split))).toEqual([EXAMPLE_WORD]);
      expect(parser.counters.rejectedCandidates).toBe(1);
      expectAccounted(parser, bytes.length);
    }
  });

  it('a real frame starting on the A4 … of a rejected candidate: AA AA A4 …', () => {
    const parser = createRfFrameParser();
    expect(parser.push(Buffer.concat([hexToBytes('AA'), EXAMPLE]))).toEqual([EXAMPLE_WORD]);
    expect(parser.counters).toEqual({ frames: 1, skippedBytes: 1, rejectedCandidates: 0 });
  });

  it('a truncated frame followed by a whole one: the candidate is rejected and the whole one found', () => {
    const parser = createRfFrameParser();
    const words = feed(parser, EXAMPLE.subarray(0, 7), EXAMPLE);
    expect(words).toEqual([EXAMPLE_WORD]);
    expect(parser.counters.rejectedCandidates).toBe(1);
    expectAccounted(parser, 19);
  });

  it('reset drops the partial frame', () => {
    const parser = createRfFrameParser();
    parser.push(EXAMPLE.subarray(0, 6));
    parser.reset();
    expect(parser.pendingBytes).toBe(0);
    expect(parser.push(EXAMPLE.subarray(6))).toEqual([]);
  });

  it('does not keep a reference to the caller’s buffer', () => {
    const parser = createRfFrameParser();
    const chunk = Buffer.from(EXAMPLE.subarray(0, 5));
    parser.push(chunk);
    chunk.fill(0);
    expect(parser.push(EXAMPLE.subarray(5))).toEqual([EXAMPLE_WORD]);
  });

  // Bytes biased towards the framing bytes, so that candidates and near-frames are common.
  const wireByte = fc.oneof(fc.constantFrom(0xaa, 0xa4, 0x55), fc.integer({ min: 0, max: 255 }));
  const wireBytes = (maxLength: number) => fc.array(wireByte, { maxLength }).map((a) => Uint8Array.from(a));

  /** Cuts `bytes` at the given points (any order, duplicates allowed). */
  function cut(bytes: Uint8Array, points: number[]): Uint8Array[] {
    const at = [...new Set(points.map((p) => p % (bytes.length + 1)))].sort((a, b) => a - b);
    const chunks: Uint8Array[] = [];
    let from = 0;
    for (const p of at) {
      chunks.push(bytes.subarray(from, p));
      from = p;
    }
    chunks.push(bytes.subarray(from));
    return chunks;
  }

  const frameWord = fc
    .record({
      sync: fc.integer({ min: 0, max: 0xffff }),
      low: fc.integer({ min: 0, max: 0xffff }),
      high: fc.integer({ min: 0, max: 0xffff }),
      code: fc.integer({ min: 0, max: 0xffffff }),
    })
    .map((w): RfWord => ({ ...w, id: (w.code >>> 4).toString(16).toUpperCase().padStart(5, '0'), key: w.code & 0xf }));

  it('property: random bytes in random chunks never throw, keep < 12 bytes and account for every byte', () => {
    fc.assert(
      fc.property(fc.array(wireBytes(64), { maxLength: 20 }), (chunks) => {
        const parser = createRfFrameParser();
        let bytesIn = 0;
        for (const chunk of chunks) {
          parser.push(chunk);
          bytesIn += chunk.length;
          expect(parser.pendingBytes).toBeLessThan(RF_FRAME_LENGTH);
          expectAccounted(parser, bytesIn);
        }
      }),
    );
  });

  it('property: how the bytes are chunked never changes the words', () => {
    fc.assert(
      fc.property(wireBytes(200), fc.array(fc.nat(), { maxLength: 12 }), (bytes, points) => {
        const whole = createRfFrameParser().push(bytes);
        const parser = createRfFrameParser();
        expect(feed(parser, ...cut(bytes, points))).toEqual(whole);
      }),
    );
  });

  it('property: a valid frame embedded in random garbage, chunked at random, is among the parsed words', () => {
    // With no checksum, garbage can mimic a frame: a garbage candidate `AA A4 …` that starts up to
    // 11 bytes before the real frame and whose byte 11 lands on a 0x55 inside it is accepted and
    // swallows the real frame's head. No parser can tell those apart, so the embedded frame here has
    // no 0x55 in bytes 2..10: then every overlapping garbage candidate is rejected and scanning reaches
    // the real frame. (Garbage may still contain frames of its own: we only ask that ours is found.)
    const no55 = (w: RfWord): boolean => encodeRfFrame(w).subarray(2, 11).indexOf(0x55) === -1;
    fc.assert(
      fc.property(wireBytes(60), frameWord.filter(no55), wireBytes(60), fc.array(fc.nat(), { maxLength: 8 }), (before, word, after, points) => {
        const bytes = Buffer.concat([before, encodeRfFrame(word), after]);
        const parser = createRfFrameParser();
        expect(feed(parser, ...cut(bytes, points))).toContainEqual(word);
      }),
    );
  });

  it('the embedded-frame caveat is real: garbage can swallow a frame that holds a 0x55', () => {
    // Garbage `AA A4` 4 bytes before a frame whose byte 7 is 0x55: the garbage candidate ends on it.
    const word: RfWord = { sync: 0x2a62, low: 0x015e, high: 0x0455, code: 0x5a3c11, id: '5A3C1', key: 1 };
    const words = createRfFrameParser().push(Buffer.concat([hexToBytes('AA A4 00 00'), encodeRfFrame(word)]));
    expect(words).not.toContainEqual(word);
  });
});
