// SPEC §3/§4, STYLE "Errors and validation at the edges": wire input never throws. Every parser
// is fed random bytes, and random frames that pass the CRC (so the checks after it run too).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { withCrc } from '../../../../devices/modbus/crc.js';
import {
  parseReadResponse,
  parseWriteSingleResponse,
  readHoldingRequest,
  responseProgress,
  writeSingleRequest,
} from '../../../../devices/modbus/frames.js';
import { decodeRegisters } from '../../../../devices/modbus/register-map.js';
import { findResponse } from '../../../../devices/modbus/resync.js';
import { parseRequest } from '../../../../devices/modbus/slave.js';
import { ERS1_REGISTER_MAP } from '../../../../devices/models/elec-ers1/register-map.js';

const CODES = new Set(['DEV_ERR_SHORT_FRAME', 'DEV_ERR_CRC', 'DEV_ERR_SLAVE_ADDRESS', 'DEV_ERR_FUNCTION', 'DEV_ERR_EXCEPTION', 'DEV_ERR_BYTE_COUNT', 'DEV_ERR_RANGE']);

// Half raw noise, half noise with a correct CRC appended; the address and function biased towards
// the ones the parsers expect so that the deeper checks are reached often.
const wire = fc.oneof(
  fc.uint8Array({ maxLength: 300 }),
  fc
    .tuple(fc.constantFrom(1, 1, 2, 0, 255), fc.constantFrom(3, 6, 0x83, 0x86, 4), fc.uint8Array({ maxLength: 260 }))
    .map(([a, f, rest]) => withCrc(Uint8Array.of(a, f, ...rest))),
);
const read = fc.record({ slave: fc.integer({ min: 1, max: 247 }), count: fc.integer({ min: 1, max: 125 }) }).map(({ slave, count }) => readHoldingRequest(slave, 0, count));
const write = fc.record({ slave: fc.integer({ min: 1, max: 247 }), value: fc.integer({ min: 0, max: 0xffff }) }).map(({ slave, value }) => writeSingleRequest(slave, 0x0100, value));

function isTypedResult(r: { ok: boolean; error?: { code: string; message: string } }): boolean {
  return r.ok || (r.error !== undefined && CODES.has(r.error.code) && r.error.message.length > 0);
}

describe('no Modbus parser throws on wire input (property)', () => {
  it('parseReadResponse', () => {
    fc.assert(fc.property(wire, fc.oneof(read, fc.record({ slave: fc.integer(), count: fc.integer() })), (bytes, req) => {
      expect(isTypedResult(parseReadResponse(bytes, req))).toBe(true);
    }));
  });

  it('parseWriteSingleResponse', () => {
    fc.assert(fc.property(wire, write, (bytes, req) => {
      expect(isTypedResult(parseWriteSingleResponse(bytes, req))).toBe(true);
    }));
  });

  it('parseRequest', () => {
    fc.assert(fc.property(wire, (bytes) => {
      expect(isTypedResult(parseRequest(bytes))).toBe(true);
    }));
  });

  it('responseProgress and findResponse', () => {
    fc.assert(fc.property(wire, fc.oneof(read, write), (bytes, req) => {
      const p = responseProgress(bytes, req);
      expect(p.complete ? p.length : p.missing).toBeGreaterThan(0);
      const s = findResponse(bytes, req);
      expect(s.skipped).toBeGreaterThanOrEqual(0);
      expect(s.skipped).toBeLessThanOrEqual(bytes.length);
    }));
  });

  it('decodeRegisters, on any array of numbers', () => {
    fc.assert(fc.property(fc.array(fc.oneof(fc.integer({ min: 0, max: 0xffff }), fc.double())), (values) => {
      expect(isTypedResult(decodeRegisters(ERS1_REGISTER_MAP, values))).toBe(true);
    }));
  });
});
