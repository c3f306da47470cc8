import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { hexToBytes } from '../../../../devices/fixtures.js';
import { withCrc } from '../../../../devices/modbus/crc.js';
import {
  buildReadHoldingRequest,
  buildWriteSingleRequest,
  parseReadResponse,
  parseWriteSingleResponse,
} from '../../../../devices/modbus/frames.js';
import {
  buildExceptionResponse,
  buildReadResponse,
  buildWriteSingleResponse,
  parseRequest,
} from '../../../../devices/modbus/slave.js';

function code(result: { ok: boolean; error?: { code: string } }): string {
  return result.ok ? 'ok' : (result.error?.code ?? '?');
}

describe('parseRequest', () => {
  it('reads the ERS-1 poll and a set-point write', () => {
    expect(parseRequest(hexToBytes('01 03 00 01 00 1D D4 03'))).toEqual({ ok: true, value: { fc: 3, slave: 1, start: 1, count: 29 } });
    expect(parseRequest(buildWriteSingleRequest(7, 0x0100, 250))).toEqual({ ok: true, value: { fc: 6, slave: 7, address: 0x0100, value: 250 } });
  });

  it('returns a broadcast write (address 0) for the slave to act on silently', () => {
    expect(parseRequest(withCrc(hexToBytes('00 06 01 00 00 C8')))).toMatchObject({ ok: true, value: { slave: 0 } });
  });

  it('rejects with typed errors', () => {
    const poll = buildReadHoldingRequest(1, 1, 29);
    const flipped = Buffer.from(poll);
    flipped[3] = (flipped[3] ?? 0) ^ 0x80;
    expect(code(parseRequest(poll.subarray(0, 3)))).toBe('DEV_ERR_SHORT_FRAME');
    expect(code(parseRequest(poll.subarray(0, 7)))).toBe('DEV_ERR_SHORT_FRAME');
    expect(code(parseRequest(flipped))).toBe('DEV_ERR_CRC');
    expect(code(parseRequest(withCrc(hexToBytes('F8 03 00 01 00 1D'))))).toBe('DEV_ERR_SLAVE_ADDRESS');
    // FC05 write single coil (the SPEC §4.1 vector): valid frame, unsupported function → exception 1
    expect(code(parseRequest(hexToBytes('01 05 00 00 FF 00 8C 3A')))).toBe('DEV_ERR_FUNCTION');
    expect(code(parseRequest(withCrc(hexToBytes('01 03 00 01 00 1D 00'))))).toBe('DEV_ERR_BYTE_COUNT');
    expect(code(parseRequest(withCrc(hexToBytes('01 03 00 01'))))).toBe('DEV_ERR_SHORT_FRAME');
  });

  it('rejects a read of 0 or more than 125 registers as DEV_ERR_RANGE (exception 3, application §6.3)', () => {
    expect(parseRequest(withCrc(hexToBytes('01 03 00 00 00 00')))).toMatchObject({ ok: false, error: { code: 'DEV_ERR_RANGE', path: ['count'] } });
    expect(code(parseRequest(withCrc(hexToBytes('01 03 00 00 00 7E'))))).toBe('DEV_ERR_RANGE');
    expect(code(parseRequest(withCrc(hexToBytes('01 03 00 00 00 7D'))))).toBe('ok');
  });
});

describe('response builders', () => {
  it('build an FC03 response byte for byte', () => {
    expect(buildReadResponse(1, [0x1234])).toEqual(hexToBytes('01 03 02 12 34 B5 33'));
  });

  it('build the FC06 echo identical to the request', () => {
    expect(buildWriteSingleResponse(0x11, 1, 3)).toEqual(hexToBytes('11 06 00 01 00 03 9A 9B'));
  });

  it('build an exception reply: address, fc | 0x80, code, CRC', () => {
    expect(buildExceptionResponse(1, 3, 2)).toEqual(hexToBytes('01 83 02 C0 F1'));
  });

  it('refuse what cannot go on the wire', () => {
    expect(() => buildReadResponse(1, [])).toThrow(RangeError);
    expect(() => buildReadResponse(1, new Array<number>(126).fill(0))).toThrow(RangeError);
    expect(() => buildReadResponse(1, [0x10000])).toThrow(RangeError);
    expect(() => buildReadResponse(1, [1.5])).toThrow(RangeError);
    expect(() => buildWriteSingleResponse(1, 0, -1)).toThrow(RangeError);
    expect(() => buildExceptionResponse(1, 0x83, 2)).toThrow(RangeError);
    expect(() => buildExceptionResponse(1, 3, 0)).toThrow(RangeError);
  });
});

describe('master and slave round trip (property)', () => {
  const slave = fc.integer({ min: 1, max: 247 });

  it('FC03: request → slave parse → response → master parse gives the registers back', () => {
    const arb = fc
      .record({ slave, start: fc.integer({ min: 0, max: 0xffff }), values: fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 1, maxLength: 125 }) })
      .filter(({ start, values }) => start + values.length <= 0x10000);
    fc.assert(
      fc.property(arb, ({ slave: s, start, values }) => {
        const request = parseRequest(buildReadHoldingRequest(s, start, values.length));
        expect(request).toEqual({ ok: true, value: { fc: 3, slave: s, start, count: values.length } });
        expect(parseReadResponse(buildReadResponse(s, values), { slave: s, count: values.length })).toEqual({ ok: true, value: values });
      }),
    );
  });

  it('FC06: request → slave parse → echo → master parse', () => {
    fc.assert(
      fc.property(slave, fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0, max: 0xffff }), (s, address, value) => {
        const request = parseRequest(buildWriteSingleRequest(s, address, value));
        expect(request).toEqual({ ok: true, value: { fc: 6, slave: s, address, value } });
        expect(parseWriteSingleResponse(buildWriteSingleResponse(s, address, value), { slave: s, address, value })).toEqual({ ok: true, value: { address, value } });
      }),
    );
  });

  it('exception replies reach the master as DEV_ERR_EXCEPTION with their code', () => {
    fc.assert(
      fc.property(slave, fc.integer({ min: 1, max: 255 }), (s, exception) => {
        const result = parseReadResponse(buildExceptionResponse(s, 3, exception), { slave: s, count: 29 });
        expect(!result.ok && result.error.code).toBe('DEV_ERR_EXCEPTION');
        expect(!result.ok && result.error.message).toContain(`code ${exception} `);
      }),
    );
  });
});
