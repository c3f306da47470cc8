/**
 * Modbus RTU framing, master side (SPEC §4.1): the two requests gridedge sends (FC03, FC06) and
 * the checks on what comes back. Pure: bytes in, bytes or a typed Result out. Wire input never
 * throws; a builder given arguments outside the protocol's ranges is a programming error and
 * throws a RangeError.
 *
 * References: "Modbus over serial line v1.02" (RTU framing, CRC) and "Modbus application
 * protocol v1.1b3" (PDUs, exception codes), cited below as "serial line" and "application".
 */
import { fail, ok, type DecodeError, type Result } from '../errors.js';
import { carriedCrc, crc16Modbus, hasValidCrc, withCrc } from './crc.js';

// application §6.3, §6.6
export const FC_READ_HOLDING_REGISTERS = 0x03;
export const FC_WRITE_SINGLE_REGISTER = 0x06;
/** application §7: an exception response echoes the function code with its high bit set. */
export const EXCEPTION_FLAG = 0x80;
/** application §6.3: quantity of registers 1 to 125 (0x7D). */
export const MAX_READ_REGISTERS = 125;
/** serial line §2.2: 0 is broadcast, 1–247 unicast, 248–255 reserved. */
export const MIN_SLAVE_ADDRESS = 1;
export const MAX_SLAVE_ADDRESS = 247;
/** address, function | 0x80, exception code, CRC (2). */
export const EXCEPTION_RESPONSE_LENGTH = 5;
/** Both FC03 and FC06 requests, and the FC06 echo: address, function, 2 × u16, CRC (2). */
export const REQUEST_LENGTH = 8;
export const WRITE_SINGLE_RESPONSE_LENGTH = 8;

/** application §7, table of exception codes. */
export const EXCEPTION_NAMES: Readonly<Record<number, string>> = {
  0x01: 'illegal function',
  0x02: 'illegal data address',
  0x03: 'illegal data value',
  0x04: 'slave device failure',
  0x05: 'acknowledge',
  0x06: 'slave device busy',
  0x08: 'memory parity error',
  0x0a: 'gateway path unavailable',
  0x0b: 'gateway target device failed to respond',
};

export function exceptionName(code: number): string {
  return EXCEPTION_NAMES[code] ?? 'unknown exception code';
}

export interface ReadHoldingRequest {
  readonly fc: typeof FC_READ_HOLDING_REGISTERS;
  readonly slave: number;
  /** First register, 0-based protocol address. */
  readonly start: number;
  readonly count: number;
}

export interface WriteSingleRequest {
  readonly fc: typeof FC_WRITE_SINGLE_REGISTER;
  readonly slave: number;
  readonly address: number;
  readonly value: number;
}

export type ModbusRequest = ReadHoldingRequest | WriteSingleRequest;

/** A register value or address on the wire: an unsigned 16-bit integer. */
export function isU16(n: number): boolean {
  return Number.isInteger(n) && n >= 0 && n <= 0xffff;
}

export function hex2(n: number): string {
  return `0x${n.toString(16).toUpperCase().padStart(2, '0')}`;
}

export function hex4(n: number): string {
  return `0x${n.toString(16).toUpperCase().padStart(4, '0')}`;
}

/** Big-endian u16 at `offset` (application §4.2: "big-Endian"); 0 past the end, never throws. */
export function readU16(bytes: Uint8Array, offset: number): number {
  return ((bytes[offset] ?? 0) << 8) | (bytes[offset + 1] ?? 0);
}

function requireRange(what: string, n: number, min: number, max: number): void {
  if (!Number.isInteger(n) || n < min || n > max) throw new RangeError(`${what} must be an integer ${min}–${max}, got ${n}`);
}

export function requireSlave(slave: number): void {
  requireRange('slave address', slave, MIN_SLAVE_ADDRESS, MAX_SLAVE_ADDRESS);
}

/** Request descriptor for FC03; the parsers below take it to know what to expect. */
export function readHoldingRequest(slave: number, start: number, count: number): ReadHoldingRequest {
  requireSlave(slave);
  requireRange('start register', start, 0, 0xffff);
  requireRange('register count', count, 1, MAX_READ_REGISTERS);
  // application §6.3: the read must stay inside the 16-bit register space.
  if (start + count > 0x10000) throw new RangeError(`registers ${start}+${count} run past 0xFFFF`);
  return { fc: FC_READ_HOLDING_REGISTERS, slave, start, count };
}

/** Request descriptor for FC06. Broadcast (address 0) is not offered: the gateway always wants the echo. */
export function writeSingleRequest(slave: number, address: number, value: number): WriteSingleRequest {
  requireSlave(slave);
  requireRange('register address', address, 0, 0xffff);
  requireRange('register value', value, 0, 0xffff);
  return { fc: FC_WRITE_SINGLE_REGISTER, slave, address, value };
}

/** The RTU frame of a request: address, function, two big-endian words, CRC (serial line §2.5.1). */
export function encodeRequest(request: ModbusRequest): Buffer {
  const body = Buffer.alloc(REQUEST_LENGTH - 2);
  body[0] = request.slave;
  body[1] = request.fc;
  if (request.fc === FC_READ_HOLDING_REGISTERS) {
    body.writeUInt16BE(request.start, 2);
    body.writeUInt16BE(request.count, 4);
  } else {
    body.writeUInt16BE(request.address, 2);
    body.writeUInt16BE(request.value, 4);
  }
  return withCrc(body);
}

/** FC03 request frame, e.g. `01 03 00 01 00 1D` + CRC for the ERS-1 poll (SPEC §4.2). */
export function buildReadHoldingRequest(slave: number, start: number, count: number): Buffer {
  return encodeRequest(readHoldingRequest(slave, start, count));
}

/** FC06 request frame. */
export function buildWriteSingleRequest(slave: number, address: number, value: number): Buffer {
  return encodeRequest(writeSingleRequest(slave, address, value));
}

/** Length of the normal (non-exception) response to a request: FC03 5 + 2·count, FC06 8 (the echo). */
export function expectedResponseLength(request: ModbusRequest): number {
  return request.fc === FC_READ_HOLDING_REGISTERS ? 5 + 2 * request.count : WRITE_SINGLE_RESPONSE_LENGTH;
}

export type ResponseProgress =
  /** Wait for at least `missing` more bytes (exact once the function byte has arrived). */
  | { readonly complete: false; readonly missing: number }
  /** The first `length` bytes are the whole response as the function byte announces it: hand them to the parser. */
  | { readonly complete: true; readonly length: number; readonly exception: boolean };

/**
 * For the bytes received so far after sending `request`, whether the response is complete. RTU
 * ends a frame with 3.5 character times of silence (serial line §2.5.1.1); the master knows the
 * length from its own request instead, so it need not wait for the silence. A function byte that
 * is neither the request's nor its exception form is taken as a normal-length reply, so the
 * parser can reject it as DEV_ERR_FUNCTION as soon as possible rather than after a timeout.
 */
export function responseProgress(received: Uint8Array, request: ModbusRequest): ResponseProgress {
  if (received.length < 2) return { complete: false, missing: EXCEPTION_RESPONSE_LENGTH - received.length };
  const exception = received[1] === (request.fc | EXCEPTION_FLAG);
  const length = exception ? EXCEPTION_RESPONSE_LENGTH : expectedResponseLength(request);
  if (received.length < length) return { complete: false, missing: length - received.length };
  return { complete: true, length, exception };
}

/**
 * The checks every response shares, in the order that gives the most useful reason: a frame too
 * short to hold anything; then the CRC, since nothing in a corrupt frame can be trusted (a frame
 * cut short also fails its CRC and is reported as short); then address, exception and function.
 */
function checkResponse(frame: Uint8Array, slave: number, fc: number, normalLength: number): DecodeError | undefined {
  if (frame.length < EXCEPTION_RESPONSE_LENGTH) {
    return fail('DEV_ERR_SHORT_FRAME', `${frame.length} bytes, a response has at least ${EXCEPTION_RESPONSE_LENGTH}`).error;
  }
  const fcByte = frame[1] ?? 0;
  const exception = fcByte === (fc | EXCEPTION_FLAG);
  const length = exception ? EXCEPTION_RESPONSE_LENGTH : normalLength;
  if (!hasValidCrc(frame)) {
    if (frame.length < length) return fail('DEV_ERR_SHORT_FRAME', `${frame.length} of ${length} bytes`).error;
    const computed = crc16Modbus(frame, 0, frame.length - 2);
    return fail('DEV_ERR_CRC', `computed ${hex4(computed)}, frame carries ${hex4(carriedCrc(frame) ?? 0)}`).error;
  }
  const address = frame[0] ?? 0;
  if (address !== slave) return fail('DEV_ERR_SLAVE_ADDRESS', `expected ${slave}, got ${address}`).error;
  if (exception) {
    if (frame.length !== EXCEPTION_RESPONSE_LENGTH) {
      return fail('DEV_ERR_BYTE_COUNT', `an exception reply is ${EXCEPTION_RESPONSE_LENGTH} bytes, got ${frame.length}`).error;
    }
    const code = frame[2] ?? 0;
    return fail('DEV_ERR_EXCEPTION', `code ${code} (${exceptionName(code)}) to function ${hex2(fc)}`).error;
  }
  if (fcByte !== fc) return fail('DEV_ERR_FUNCTION', `expected ${hex2(fc)}, got ${hex2(fcByte)}`).error;
  return undefined;
}

/**
 * The register values of a whole FC03 response frame (CRC included) to `request`. Errors:
 * DEV_ERR_SHORT_FRAME, DEV_ERR_CRC, DEV_ERR_SLAVE_ADDRESS, DEV_ERR_EXCEPTION (message names the
 * code), DEV_ERR_FUNCTION, DEV_ERR_BYTE_COUNT (byte count ≠ 2 × requested registers, or the frame
 * length disagrees with its byte count).
 */
export function parseReadResponse(frame: Uint8Array, request: Pick<ReadHoldingRequest, 'slave' | 'count'>): Result<number[]> {
  const wanted = 2 * request.count;
  const error = checkResponse(frame, request.slave, FC_READ_HOLDING_REGISTERS, 5 + wanted);
  if (error) return { ok: false, error };
  // application §6.3: byte count = 2 × N.
  const byteCount = frame[2] ?? 0;
  if (byteCount !== wanted) {
    return fail('DEV_ERR_BYTE_COUNT', `byte count ${byteCount}, ${request.count} registers need ${wanted}`, [2]);
  }
  if (frame.length !== 5 + byteCount) {
    return fail('DEV_ERR_BYTE_COUNT', `frame is ${frame.length} bytes, byte count ${byteCount} makes ${5 + byteCount}`);
  }
  const values: number[] = [];
  for (let i = 0; i < request.count; i++) values.push(readU16(frame, 3 + 2 * i));
  return ok(values);
}

/**
 * Checks the FC06 echo (application §6.6: the normal response is the request echoed). An echo of
 * another register or value is reported as DEV_ERR_BYTE_COUNT, the catalogue's "does not match
 * the request" code, with the path of the field that differs.
 */
export function parseWriteSingleResponse(
  frame: Uint8Array,
  request: Pick<WriteSingleRequest, 'slave' | 'address' | 'value'>,
): Result<{ address: number; value: number }> {
  const error = checkResponse(frame, request.slave, FC_WRITE_SINGLE_REGISTER, WRITE_SINGLE_RESPONSE_LENGTH);
  if (error) return { ok: false, error };
  if (frame.length !== WRITE_SINGLE_RESPONSE_LENGTH) {
    return fail('DEV_ERR_BYTE_COUNT', `a write echo is ${WRITE_SINGLE_RESPONSE_LENGTH} bytes, got ${frame.length}`);
  }
  const address = readU16(frame, 2);
  const value = readU16(frame, 4);
  if (address !== request.address) {
    return fail('DEV_ERR_BYTE_COUNT', `echo is for register ${hex4(address)}, wrote ${hex4(request.address)}`, ['address']);
  }
  if (value !== request.value) {
    return fail('DEV_ERR_BYTE_COUNT', `echo value ${value}, wrote ${request.value}`, ['value']);
  }
  return ok({ address, value });
}
