/**
 * Modbus RTU framing, slave side: what the meter simulator needs to answer the gateway's polls
 * (FC03) and set-point writes (FC06). Same conventions as frames.ts: wire input gives a typed
 * Result and never throws; builder arguments outside the protocol's ranges throw a RangeError.
 */
import { fail, ok, type Result } from '../errors.js';
import { hasValidCrc, withCrc } from './crc.js';
import {
  EXCEPTION_FLAG,
  FC_READ_HOLDING_REGISTERS,
  FC_WRITE_SINGLE_REGISTER,
  MAX_READ_REGISTERS,
  MAX_SLAVE_ADDRESS,
  REQUEST_LENGTH,
  hex2,
  isU16,
  readU16,
  requireSlave,
  type ModbusRequest,
} from './frames.js';

/** address + function + CRC: nothing shorter is a frame (serial line §2.5.1). */
const MIN_FRAME_LENGTH = 4;

/**
 * A request frame as a slave receives it. The simulator maps the errors to its reaction:
 * DEV_ERR_SHORT_FRAME / DEV_ERR_CRC / DEV_ERR_SLAVE_ADDRESS → stay silent (serial line §2.4.1:
 * a frame with a bad CRC is discarded, no reply); DEV_ERR_FUNCTION → exception 1 (the CRC was
 * good, so `bytes[0]` and `bytes[1]` can be trusted for the reply); DEV_ERR_RANGE → exception 3
 * (application §6.3: quantity outside 1–125). Whether the registers exist (exception 2) is the
 * slave's business, not framing's. Address 0 (broadcast) is returned: a slave never answers it.
 */
export function parseRequest(bytes: Uint8Array): Result<ModbusRequest> {
  if (bytes.length < MIN_FRAME_LENGTH) return fail('DEV_ERR_SHORT_FRAME', `${bytes.length} bytes, a frame has at least ${MIN_FRAME_LENGTH}`);
  const fc = bytes[1] ?? 0;
  const supported = fc === FC_READ_HOLDING_REGISTERS || fc === FC_WRITE_SINGLE_REGISTER;
  if (!hasValidCrc(bytes)) {
    if (supported && bytes.length < REQUEST_LENGTH) return fail('DEV_ERR_SHORT_FRAME', `${bytes.length} of ${REQUEST_LENGTH} bytes`);
    return fail('DEV_ERR_CRC');
  }
  const slave = bytes[0] ?? 0;
  if (slave > MAX_SLAVE_ADDRESS) return fail('DEV_ERR_SLAVE_ADDRESS', `${slave} is a reserved address (248–255)`);
  if (!supported) return fail('DEV_ERR_FUNCTION', `${hex2(fc)} is not supported (FC03, FC06)`);
  if (bytes.length < REQUEST_LENGTH) return fail('DEV_ERR_SHORT_FRAME', `${bytes.length} of ${REQUEST_LENGTH} bytes`);
  if (bytes.length > REQUEST_LENGTH) return fail('DEV_ERR_BYTE_COUNT', `a request is ${REQUEST_LENGTH} bytes, got ${bytes.length}`);
  const first = readU16(bytes, 2);
  const second = readU16(bytes, 4);
  if (fc === FC_WRITE_SINGLE_REGISTER) return ok({ fc, slave, address: first, value: second });
  if (second < 1 || second > MAX_READ_REGISTERS) {
    return fail('DEV_ERR_RANGE', `register count ${second}, allowed 1–${MAX_READ_REGISTERS}`, ['count']);
  }
  return ok({ fc, slave, start: first, count: second });
}

/** FC03 normal response: address, 0x03, byte count, values big-endian, CRC (application §6.3). */
export function buildReadResponse(slave: number, values: readonly number[]): Buffer {
  requireSlave(slave);
  if (values.length < 1 || values.length > MAX_READ_REGISTERS) {
    throw new RangeError(`a read response carries 1–${MAX_READ_REGISTERS} registers, got ${values.length}`);
  }
  const body = Buffer.alloc(3 + 2 * values.length);
  body[0] = slave;
  body[1] = FC_READ_HOLDING_REGISTERS;
  body[2] = 2 * values.length;
  values.forEach((v, i) => {
    if (!isU16(v)) throw new RangeError(`register ${i} value must be 0–65535, got ${v}`);
    body.writeUInt16BE(v, 3 + 2 * i);
  });
  return withCrc(body);
}

/** FC06 normal response: the request echoed (application §6.6). */
export function buildWriteSingleResponse(slave: number, address: number, value: number): Buffer {
  requireSlave(slave);
  if (!isU16(address) || !isU16(value)) throw new RangeError(`register address and value must be 0–65535, got ${address}, ${value}`);
  const body = Buffer.alloc(6);
  body[0] = slave;
  body[1] = FC_WRITE_SINGLE_REGISTER;
  body.writeUInt16BE(address, 2);
  body.writeUInt16BE(value, 4);
  return withCrc(body);
}

/** Exception response: address, function | 0x80, code, CRC (application §7). */
export function buildExceptionResponse(slave: number, fc: number, code: number): Buffer {
  requireSlave(slave);
  if (!Number.isInteger(fc) || fc < 1 || fc > 0x7f) throw new RangeError(`function code must be 1–127, got ${fc}`);
  if (!Number.isInteger(code) || code < 1 || code > 0xff) throw new RangeError(`exception code must be 1–255, got ${code}`);
  return withCrc(Uint8Array.of(slave, fc | EXCEPTION_FLAG, code));
}
