/**
 * CRC-16/MODBUS: init 0xFFFF, reflected polynomial 0xA001 (0x8005 reversed), no final XOR,
 * sent low byte first. Modbus over serial line v1.02 §2.5.1.2 and §6.2.2; SPEC §4.1.
 */

// The spec's appendix shows a byte-wise table of the same polynomial; one 256-entry table of
// 16-bit words is the same thing and keeps the loop to one lookup per byte.
const TABLE: Uint16Array = (() => {
  const table = new Uint16Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xa001 : c >>> 1;
    table[n] = c;
  }
  return table;
})();

/** CRC-16/MODBUS of `data[start, end)`; out-of-range bounds are clamped, never thrown. */
export function crc16Modbus(data: Uint8Array, start = 0, end = data.length): number {
  const from = Math.max(0, Math.min(start, data.length));
  const to = Math.max(from, Math.min(end, data.length));
  let crc = 0xffff;
  for (let i = from; i < to; i++) {
    crc = (crc >>> 8) ^ (TABLE[(crc ^ (data[i] ?? 0)) & 0xff] ?? 0);
  }
  return crc;
}

/** `body` followed by its CRC, low byte first (Modbus over serial line v1.02 §2.5.1.2). */
export function withCrc(body: Uint8Array): Buffer {
  const crc = crc16Modbus(body);
  const frame = Buffer.alloc(body.length + 2);
  frame.set(body, 0);
  frame[body.length] = crc & 0xff;
  frame[body.length + 1] = crc >>> 8;
  return frame;
}

/** The CRC a frame carries in its last two bytes (low byte first), or undefined when it has fewer than three bytes. */
export function carriedCrc(frame: Uint8Array, length = frame.length): number | undefined {
  if (length < 3 || length > frame.length) return undefined;
  return (frame[length - 2] ?? 0) | ((frame[length - 1] ?? 0) << 8);
}

/** True when the first `length` bytes of `frame` end in the CRC of the bytes before it. */
export function hasValidCrc(frame: Uint8Array, length = frame.length): boolean {
  const carried = carriedCrc(frame, length);
  return carried !== undefined && carried === crc16Modbus(frame, 0, length - 2);
}
