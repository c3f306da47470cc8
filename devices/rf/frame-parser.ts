/**
 * The RF bridge's UART framing (SPEC §4.3): `AA A4 [sync u16][low u16][high u16][code 24 bits] 55`,
 * 12 bytes, big-endian, no checksum. `code = id (20 bits) << 4 | key (4 bits)`.
 *
 * The bytes come from a serial port, so they arrive in arbitrary chunks and may contain line
 * noise. With no checksum the only framing evidence is the `AA A4` head and the `55` tail, so
 * the parser is careful about what it throws away:
 * - a byte that cannot start a frame is skipped (counted in `skippedBytes`);
 * - an `AA A4` candidate whose byte 11 is not `55` is rejected (counted in `rejectedCandidates`)
 *   and scanning resumes at the byte after its `AA`, so a real frame that starts inside the bad
 *   candidate is still found;
 * - a candidate that runs past the end of a chunk is kept (at most 11 bytes) and completed by the
 *   next chunk, so a frame split at any byte is assembled.
 *
 * Every byte pushed ends up in exactly one place, which the tests check:
 * `bytesIn = 12 × frames + skippedBytes + rejectedCandidates + pendingBytes`
 * (a rejected candidate discards exactly one byte, its `AA`; the rest is rescanned).
 */

export const RF_FRAME_LENGTH = 12;
export const RF_HEAD_0 = 0xaa;
export const RF_HEAD_1 = 0xa4;
export const RF_TAIL = 0x55;

/** One EV1527 word as the bridge reported it. */
export interface RfWord {
  /** Sync pulse length as the bridge measured it (µs, per the bridge's convention). */
  readonly sync: number;
  /** Short ("low") pulse length. */
  readonly low: number;
  /** Long ("high") pulse length. */
  readonly high: number;
  /** The 24-bit code: `id << 4 | key`. */
  readonly code: number;
  /** 20-bit EV1527 id, 5 upper-case hex digits (the registry's `rf` column). */
  readonly id: string;
  /** 4-bit key code. */
  readonly key: number;
}

/** Why bytes were thrown away, for the serial source to count by reason. */
export interface RfFrameCounters {
  /** Whole frames parsed. */
  readonly frames: number;
  /** Bytes that could not start a frame (not `AA`, or `AA` not followed by `A4`). */
  readonly skippedBytes: number;
  /** `AA A4` candidates whose byte 11 was not `55`. */
  readonly rejectedCandidates: number;
}

export interface RfFrameParser {
  /** Feeds bytes as they arrive; returns the words completed by them, in order. Never throws. */
  push(chunk: Uint8Array): RfWord[];
  /** Bytes held for a frame not yet complete (always < 12). */
  readonly pendingBytes: number;
  readonly counters: RfFrameCounters;
  /** Drops the partial frame (e.g. when the port is reopened: its tail will never come). */
  reset(): void;
}

/** 20-bit id as the registry spells it: 5 upper-case hex digits. */
export function rfIdToHex(id: number): string {
  return id.toString(16).toUpperCase().padStart(5, '0');
}

function wordAt(buf: Uint8Array, i: number): RfWord {
  // Indices are in range: the caller checked i + 11 < buf.length.
  const b = (k: number): number => buf[i + k] ?? 0;
  const code = (b(8) << 16) | (b(9) << 8) | b(10);
  return {
    sync: (b(2) << 8) | b(3),
    low: (b(4) << 8) | b(5),
    high: (b(6) << 8) | b(7),
    code,
    id: rfIdToHex(code >>> 4),
    key: code & 0xf,
  };
}

export function createRfFrameParser(): RfFrameParser {
  // Invariant between calls: empty, or a prefix of a possible frame (starts with AA, < 12 bytes).
  let pending: Uint8Array = new Uint8Array(0);
  let frames = 0;
  let skippedBytes = 0;
  let rejectedCandidates = 0;

  function push(chunk: Uint8Array): RfWord[] {
    let buf: Uint8Array;
    if (pending.length === 0) {
      buf = chunk;
    } else {
      buf = new Uint8Array(pending.length + chunk.length);
      buf.set(pending, 0);
      buf.set(chunk, pending.length);
    }
    const words: RfWord[] = [];
    const n = buf.length;
    let i = 0;
    while (i < n) {
      if (buf[i] !== RF_HEAD_0) {
        skippedBytes++;
        i++;
        continue;
      }
      if (i + 1 >= n) break; // a lone AA at the end: may be the start of a frame
      if (buf[i + 1] !== RF_HEAD_1) {
        skippedBytes++;
        i++;
        continue;
      }
      if (i + RF_FRAME_LENGTH > n) break; // a candidate that the next chunk completes
      if (buf[i + RF_FRAME_LENGTH - 1] !== RF_TAIL) {
        // Not a frame, but a real one may start anywhere inside it: resume right after its AA.
        rejectedCandidates++;
        i++;
        continue;
      }
      words.push(wordAt(buf, i));
      frames++;
      i += RF_FRAME_LENGTH;
    }
    // Copy (Buffer#slice would be a view): never pin or alias the caller's buffer, which serialport
    // may reuse, and which may be large.
    pending = Uint8Array.from(buf.subarray(i));
    return words;
  }

  return {
    push,
    get pendingBytes() {
      return pending.length;
    },
    get counters() {
      return { frames, skippedBytes, rejectedCandidates };
    },
    reset() {
      pending = new Uint8Array(0);
    },
  };
}

/** The bridge's timing values in the SPEC §4.3 example (`2A 62 01 5E 04 1A`): plausible for simulators. */
export const RF_EXAMPLE_TIMING = { sync: 0x2a62, low: 0x015e, high: 0x041a } as const;

/**
 * Encodes one frame, for simulators and tests. Throws on values that do not fit their fields:
 * that is a programming error, never wire input.
 */
export function encodeRfFrame(word: { sync: number; low: number; high: number; code: number }): Buffer {
  const check = (name: string, v: number, max: number): void => {
    if (!Number.isInteger(v) || v < 0 || v > max) throw new RangeError(`rf frame ${name} out of range: ${v}`);
  };
  check('sync', word.sync, 0xffff);
  check('low', word.low, 0xffff);
  check('high', word.high, 0xffff);
  check('code', word.code, 0xffffff);
  const out = Buffer.alloc(RF_FRAME_LENGTH);
  out[0] = RF_HEAD_0;
  out[1] = RF_HEAD_1;
  out.writeUInt16BE(word.sync, 2);
  out.writeUInt16BE(word.low, 4);
  out.writeUInt16BE(word.high, 6);
  out[8] = (word.code >>> 16) & 0xff;
  out[9] = (word.code >>> 8) & 0xff;
  out[10] = word.code & 0xff;
  out[11] = RF_TAIL;
  return out;
}
