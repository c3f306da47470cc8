import { describe, expect, it } from 'vitest';
import { hexToBytes } from '../../../../devices/fixtures.js';
import { withCrc } from '../../../../devices/modbus/crc.js';
import {
  buildReadHoldingRequest,
  buildWriteSingleRequest,
  exceptionName,
  expectedResponseLength,
  parseReadResponse,
  parseWriteSingleResponse,
  readHoldingRequest,
  responseProgress,
  writeSingleRequest,
} from '../../../../devices/modbus/frames.js';
import { buildExceptionResponse, buildReadResponse, buildWriteSingleResponse } from '../../../../devices/modbus/slave.js';

const read = readHoldingRequest(1, 0x0001, 29);
const write = writeSingleRequest(1, 0x0100, 300);

function code(result: { ok: boolean; error?: { code: string } }): string {
  return result.ok ? 'ok' : (result.error?.code ?? '?');
}

describe('request builders', () => {
  it('build the SPEC §4.1 vectors byte for byte', () => {
    expect(buildReadHoldingRequest(1, 0, 1)).toEqual(hexToBytes('01 03 00 00 00 01 84 0A'));
    expect(buildReadHoldingRequest(1, 0x1000, 0x2a)).toEqual(hexToBytes('01 03 10 00 00 2A C0 D5'));
  });

  it('build the ERS-1 poll (SPEC §4.2)', () => {
    expect(buildReadHoldingRequest(1, 0x0001, 29)).toEqual(hexToBytes('01 03 00 01 00 1D D4 03'));
  });

  it('build FC06 with address and value big-endian', () => {
    // 300 mA leakage set-point to register 0x0100 of slave 1
    expect(buildWriteSingleRequest(1, 0x0100, 300)).toEqual(withCrc(hexToBytes('01 06 01 00 01 2C')));
    expect(buildWriteSingleRequest(0x11, 0x0001, 0x0003)).toEqual(hexToBytes('11 06 00 01 00 03 9A 9B'));
  });

  it('refuse arguments outside the protocol (a programming error, so it throws)', () => {
    expect(() => buildReadHoldingRequest(0, 0, 1)).toThrow(RangeError); // broadcast read has no reply
    expect(() => buildReadHoldingRequest(248, 0, 1)).toThrow(RangeError);
    expect(() => buildReadHoldingRequest(1, 0, 0)).toThrow(RangeError);
    expect(() => buildReadHoldingRequest(1, 0, 126)).toThrow(RangeError);
    expect(() => buildReadHoldingRequest(1, 0xfff0, 0x20)).toThrow(RangeError);
    expect(() => buildWriteSingleRequest(1, 0, 0x10000)).toThrow(RangeError);
    expect(() => buildWriteSingleRequest(1, -1, 0)).toThrow(RangeError);
  });
});

describe('responseProgress', () => {
  const response = buildReadResponse(1, Array.from({ length: 29 }, (_, i) => i));

  it('knows the normal lengths', () => {
    expect(expectedResponseLength(read)).toBe(63);
    expect(expectedResponseLength(write)).toBe(8);
  });

  it('is incomplete until the whole normal response is in, then complete at 5 + 2N', () => {
    expect(responseProgress(new Uint8Array(), read)).toEqual({ complete: false, missing: 5 });
    expect(responseProgress(response.subarray(0, 1), read)).toEqual({ complete: false, missing: 4 });
    expect(responseProgress(response.subarray(0, 2), read)).toEqual({ complete: false, missing: 61 });
    expect(responseProgress(response.subarray(0, 62), read)).toEqual({ complete: false, missing: 1 });
    expect(responseProgress(response, read)).toEqual({ complete: true, length: 63, exception: false });
  });

  it('completes an exception reply at 5 bytes', () => {
    const exception = buildExceptionResponse(1, 3, 2);
    expect(responseProgress(exception.subarray(0, 4), read)).toEqual({ complete: false, missing: 1 });
    expect(responseProgress(exception, read)).toEqual({ complete: true, length: 5, exception: true });
    expect(responseProgress(buildExceptionResponse(1, 6, 3), write)).toEqual({ complete: true, length: 5, exception: true });
  });

  it('reports only the response length when more bytes arrived', () => {
    const echo = buildWriteSingleResponse(1, 0x0100, 300);
    expect(responseProgress(Buffer.concat([echo, Buffer.from([0, 0])]), write)).toEqual({ complete: true, length: 8, exception: false });
  });

  it('treats an unexpected function byte as a normal-length reply for the parser to reject', () => {
    const wrong = withCrc(hexToBytes('01 04 02 00 01'));
    expect(responseProgress(wrong, write)).toEqual({ complete: false, missing: 1 });
  });
});

describe('parseReadResponse', () => {
  const values = Array.from({ length: 29 }, (_, i) => (i * 0x1111) & 0xffff);
  const good = buildReadResponse(1, values);

  it('returns the register values', () => {
    expect(parseReadResponse(good, read)).toEqual({ ok: true, value: values });
    expect(parseReadResponse(hexToBytes('01 03 02 12 34 B5 33'), { slave: 1, count: 1 })).toEqual({ ok: true, value: [0x1234] });
  });

  it('DEV_ERR_SHORT_FRAME: fewer than 5 bytes, or cut off before its end', () => {
    expect(code(parseReadResponse(new Uint8Array(), read))).toBe('DEV_ERR_SHORT_FRAME');
    expect(code(parseReadResponse(good.subarray(0, 4), read))).toBe('DEV_ERR_SHORT_FRAME');
    expect(code(parseReadResponse(good.subarray(0, 62), read))).toBe('DEV_ERR_SHORT_FRAME');
  });

  it('DEV_ERR_CRC: a flipped bit anywhere in a full-length frame', () => {
    const bad = Buffer.from(good);
    bad[10] = (bad[10] ?? 0) ^ 0x04;
    const result = parseReadResponse(bad, read);
    expect(code(result)).toBe('DEV_ERR_CRC');
  });

  it('DEV_ERR_SLAVE_ADDRESS: a valid frame from another slave', () => {
    const result = parseReadResponse(buildReadResponse(2, values), read);
    expect(result).toEqual({ ok: false, error: { code: 'DEV_ERR_SLAVE_ADDRESS', message: expect.stringContaining('expected 1, got 2') as string } });
  });

  it('DEV_ERR_SLAVE_ADDRESS also for another slave’s exception reply', () => {
    expect(code(parseReadResponse(buildExceptionResponse(9, 3, 2), read))).toBe('DEV_ERR_SLAVE_ADDRESS');
  });

  it.each([
    [1, 'illegal function'],
    [2, 'illegal data address'],
    [3, 'illegal data value'],
    [4, 'slave device failure'],
    [6, 'slave device busy'],
    [0x0b, 'gateway target device failed to respond'],
    [0x42, 'unknown exception code'],
  ])('DEV_ERR_EXCEPTION names code %i (%s)', (exception, name) => {
    const result = parseReadResponse(buildExceptionResponse(1, 3, exception), read);
    expect(code(result)).toBe('DEV_ERR_EXCEPTION');
    expect(!result.ok && result.error.message).toContain(`code ${exception} (${name})`);
    expect(exceptionName(exception)).toBe(name);
  });

  it('DEV_ERR_EXCEPTION from the SPEC-style literal frame 01 83 02 C0 F1', () => {
    expect(code(parseReadResponse(hexToBytes('01 83 02 C0 F1'), read))).toBe('DEV_ERR_EXCEPTION');
  });

  it('DEV_ERR_FUNCTION: another function, or an exception to another function', () => {
    expect(code(parseReadResponse(withCrc(hexToBytes('01 04 02 00 01')), { slave: 1, count: 1 }))).toBe('DEV_ERR_FUNCTION');
    expect(code(parseReadResponse(buildWriteSingleResponse(1, 1, 1), { slave: 1, count: 1 }))).toBe('DEV_ERR_FUNCTION');
    expect(code(parseReadResponse(buildExceptionResponse(1, 6, 2), { slave: 1, count: 1 }))).toBe('DEV_ERR_FUNCTION');
  });

  it('DEV_ERR_BYTE_COUNT: fewer registers than requested, or a byte count the frame does not have', () => {
    expect(code(parseReadResponse(buildReadResponse(1, values.slice(0, 28)), read))).toBe('DEV_ERR_BYTE_COUNT');
    const lying = Buffer.from(good.subarray(0, -2));
    lying[2] = 0x3c;
    expect(code(parseReadResponse(withCrc(lying), read))).toBe('DEV_ERR_BYTE_COUNT');
    // right byte count, two stray bytes before the CRC
    expect(code(parseReadResponse(withCrc(hexToBytes('01 03 02 00 01 00 00')), { slave: 1, count: 1 }))).toBe('DEV_ERR_BYTE_COUNT');
  });

  it('an exception reply with a valid CRC but extra bytes is not an exception reply', () => {
    expect(code(parseReadResponse(withCrc(hexToBytes('01 83 02 00')), read))).toBe('DEV_ERR_BYTE_COUNT');
  });
});

describe('parseWriteSingleResponse', () => {
  it('accepts the echo', () => {
    expect(parseWriteSingleResponse(buildWriteSingleResponse(1, 0x0100, 300), write)).toEqual({ ok: true, value: { address: 0x0100, value: 300 } });
  });

  it('rejects each framing error with its code', () => {
    const echo = buildWriteSingleResponse(1, 0x0100, 300);
    const flipped = Buffer.from(echo);
    flipped[5] = (flipped[5] ?? 0) ^ 1;
    expect(code(parseWriteSingleResponse(echo.subarray(0, 6), write))).toBe('DEV_ERR_SHORT_FRAME');
    expect(code(parseWriteSingleResponse(flipped, write))).toBe('DEV_ERR_CRC');
    expect(code(parseWriteSingleResponse(buildWriteSingleResponse(3, 0x0100, 300), write))).toBe('DEV_ERR_SLAVE_ADDRESS');
    expect(code(parseWriteSingleResponse(buildExceptionResponse(1, 6, 3), write))).toBe('DEV_ERR_EXCEPTION');
    expect(code(parseWriteSingleResponse(buildReadResponse(1, [1, 2]), write))).toBe('DEV_ERR_FUNCTION');
  });

  it('rejects an echo of another register or value, saying which', () => {
    const other = parseWriteSingleResponse(buildWriteSingleResponse(1, 0x0101, 300), write);
    expect(!other.ok && other.error).toMatchObject({ code: 'DEV_ERR_BYTE_COUNT', path: ['address'] });
    const value = parseWriteSingleResponse(buildWriteSingleResponse(1, 0x0100, 200), write);
    expect(!value.ok && value.error).toMatchObject({ code: 'DEV_ERR_BYTE_COUNT', path: ['value'] });
  });
});
