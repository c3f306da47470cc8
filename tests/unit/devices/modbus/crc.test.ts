import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { hexToBytes } from '../../../../devices/fixtures.js';
import { carriedCrc, crc16Modbus, hasValidCrc, withCrc } from '../../../../devices/modbus/crc.js';

// The definition, bit by bit (Modbus over serial line v1.02 §6.2.2), to check the table against.
function bitwiseCrc(bytes: Uint8Array): number {
  let crc = 0xffff;
  for (const b of bytes) {
    crc ^= b;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0xa001 : crc >>> 1;
  }
  return crc;
}

describe('CRC-16/MODBUS (SPEC §4.1 test vectors)', () => {
  it('of ASCII "123456789" is 0x4B37', () => {
    expect(crc16Modbus(Buffer.from('123456789', 'ascii'))).toBe(0x4b37);
  });

  it('of nothing is the initial value', () => {
    expect(crc16Modbus(new Uint8Array())).toBe(0xffff);
  });

  it.each(['01 03 00 00 00 01 84 0A', '01 05 00 00 FF 00 8C 3A', '01 03 10 00 00 2A C0 D5'])('%s is a valid frame', (hex) => {
    expect(hasValidCrc(hexToBytes(hex))).toBe(true);
  });

  it('is appended low byte first', () => {
    expect(withCrc(hexToBytes('01 03 00 00 00 01'))).toEqual(hexToBytes('01 03 00 00 00 01 84 0A'));
    expect(carriedCrc(hexToBytes('01 03 00 00 00 01 84 0A'))).toBe(0x0a84);
  });

  it('rejects the vector with its CRC bytes swapped', () => {
    expect(hasValidCrc(hexToBytes('01 03 00 00 00 01 0A 84'))).toBe(false);
  });

  it('treats frames too short to carry a CRC as invalid, without throwing', () => {
    expect(hasValidCrc(new Uint8Array())).toBe(false);
    expect(hasValidCrc(Uint8Array.of(0xff, 0xff))).toBe(false);
    expect(carriedCrc(Uint8Array.of(1, 2))).toBeUndefined();
  });

  it('clamps out-of-range bounds', () => {
    const bytes = Buffer.from('123456789', 'ascii');
    expect(crc16Modbus(bytes, -5, 100)).toBe(0x4b37);
    expect(crc16Modbus(bytes, 7, 3)).toBe(0xffff);
  });

  it('matches the bitwise definition, and any single flipped bit breaks it (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 256 }), fc.nat(), (body, pick) => {
        expect(crc16Modbus(body)).toBe(bitwiseCrc(body));
        const frame = withCrc(body);
        expect(hasValidCrc(frame)).toBe(true);
        const bit = pick % (frame.length * 8);
        frame[bit >> 3] = (frame[bit >> 3] ?? 0) ^ (1 << (bit & 7));
        expect(hasValidCrc(frame)).toBe(false);
      }),
    );
  });
});
