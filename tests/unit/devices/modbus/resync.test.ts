import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { hexToBytes } from '../../../../devices/fixtures.js';
import { parseReadResponse, readHoldingRequest, writeSingleRequest, type ModbusRequest } from '../../../../devices/modbus/frames.js';
import { findResponse } from '../../../../devices/modbus/resync.js';
import { buildExceptionResponse, buildReadResponse, buildWriteSingleResponse } from '../../../../devices/modbus/slave.js';

const read = readHoldingRequest(1, 1, 29);
const registers = Array.from({ length: 29 }, (_, i) => i * 3);
const response = buildReadResponse(1, registers);

describe('findResponse', () => {
  it('finds a clean response at offset 0', () => {
    expect(findResponse(response, read)).toEqual({ found: true, frame: response, skipped: 0, exception: false });
  });

  it('skips garbage that even starts like a response (address, function, wrong byte count)', () => {
    const buf = Buffer.concat([hexToBytes('00 FF 01 03 02 01 03 3A 99'), response, hexToBytes('AA')]);
    const result = findResponse(buf, read);
    expect(result).toEqual({ found: true, frame: response, skipped: 9, exception: false });
    if (result.found) expect(parseReadResponse(result.frame, read)).toEqual({ ok: true, value: registers });
  });

  it('skips a frame from another slave and an exception to another function', () => {
    const buf = Buffer.concat([buildReadResponse(2, registers), buildExceptionResponse(1, 6, 2), response]);
    expect(findResponse(buf, read)).toMatchObject({ found: true, skipped: 63 + 5, exception: false });
  });

  it('finds an exception reply', () => {
    const exception = buildExceptionResponse(1, 3, 4);
    expect(findResponse(Buffer.concat([hexToBytes('FF FF'), exception]), read)).toEqual({ found: true, frame: exception, skipped: 2, exception: true });
  });

  it('finds an FC06 echo', () => {
    const echo = buildWriteSingleResponse(1, 0x0100, 300);
    expect(findResponse(Buffer.concat([hexToBytes('13'), echo]), writeSingleRequest(1, 0x0100, 300))).toMatchObject({ found: true, skipped: 1 });
  });

  it('keeps a response that has only begun to arrive', () => {
    const buf = Buffer.concat([hexToBytes('55 55 55'), response.subarray(0, 20)]);
    expect(findResponse(buf, read)).toEqual({ found: false, skipped: 3 });
    expect(findResponse(hexToBytes('55 01'), read)).toEqual({ found: false, skipped: 1 });
  });

  it('lets all of the buffer go when nothing in it can begin a response', () => {
    expect(findResponse(hexToBytes('55 02 03 3A'), read)).toEqual({ found: false, skipped: 4 });
    expect(findResponse(new Uint8Array(), read)).toEqual({ found: false, skipped: 0 });
  });

  it('rejects a corrupt response (its CRC does not match)', () => {
    const bad = Buffer.from(response);
    bad[30] = (bad[30] ?? 0) ^ 0x01;
    expect(findResponse(bad, read)).toEqual({ found: false, skipped: 63 });
  });
});

describe('findResponse properties', () => {
  const arbRequestAndResponse: fc.Arbitrary<{ request: ModbusRequest; frame: Buffer; exception: boolean }> = fc.oneof(
    fc
      .record({ slave: fc.integer({ min: 1, max: 247 }), start: fc.integer({ min: 0, max: 0xff00 }), values: fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 1, maxLength: 125 }) })
      .map(({ slave, start, values }) => ({ request: readHoldingRequest(slave, start, values.length), frame: buildReadResponse(slave, values), exception: false })),
    fc
      .record({ slave: fc.integer({ min: 1, max: 247 }), address: fc.integer({ min: 0, max: 0xffff }), value: fc.integer({ min: 0, max: 0xffff }) })
      .map(({ slave, address, value }) => ({ request: writeSingleRequest(slave, address, value), frame: buildWriteSingleResponse(slave, address, value), exception: false })),
    fc
      .record({ slave: fc.integer({ min: 1, max: 247 }), fc: fc.constantFrom(3, 6), code: fc.integer({ min: 1, max: 255 }) })
      .map(({ slave, fc: f, code }) => ({
        request: f === 3 ? readHoldingRequest(slave, 0, 10) : writeSingleRequest(slave, 0, 0),
        frame: buildExceptionResponse(slave, f, code),
        exception: true,
      })),
  );

  it('a valid response embedded in random garbage is still found, with the garbage counted as skipped', () => {
    fc.assert(
      fc.property(arbRequestAndResponse, fc.uint8Array({ maxLength: 300 }), fc.uint8Array({ maxLength: 40 }), ({ request, frame, exception }, before, after) => {
        // A false frame inside the garbage would need address, function (and byte count) and a
        // 16-bit CRC to match by chance: about 2^-32 per position at worst, so exact is safe.
        expect(findResponse(Buffer.concat([before, frame, after]), request)).toEqual({ found: true, frame, skipped: before.length, exception });
      }),
      { numRuns: 500 },
    );
  });

  it('garbage followed by part of a response: not found yet, and the start of the response is kept', () => {
    fc.assert(
      fc.property(arbRequestAndResponse, fc.uint8Array({ maxLength: 100 }), fc.nat(), ({ request, frame }, before, cut) => {
        const part = frame.subarray(0, cut % frame.length);
        const result = findResponse(Buffer.concat([before, part]), request);
        expect(result.found).toBe(false);
        expect(result.skipped).toBeLessThanOrEqual(before.length);
      }),
    );
  });
});
