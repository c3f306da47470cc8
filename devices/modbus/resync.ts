/**
 * Finding a response in a receive buffer that may start with garbage: line noise when the
 * transceiver turns around, the tail of a late reply to an earlier request, another master's
 * traffic. RTU delimits frames by silence (serial line §2.5.1.1), which a USB serial adapter
 * blurs, so the master looks for the frame itself: the polled address, the request's function
 * (or its exception form), and a CRC that matches.
 */
import { hasValidCrc } from './crc.js';
import {
  EXCEPTION_FLAG,
  EXCEPTION_RESPONSE_LENGTH,
  FC_READ_HOLDING_REGISTERS,
  expectedResponseLength,
  type ModbusRequest,
} from './frames.js';

export type ResponseSearch =
  /** `frame` (a copy) starts after `skipped` bytes; hand it to parseReadResponse / parseWriteSingleResponse. */
  | { readonly found: true; readonly frame: Buffer; readonly skipped: number; readonly exception: boolean }
  /**
   * No complete response yet. The first `skipped` bytes cannot begin one and may be dropped; a
   * response may still complete from there once more bytes arrive. On the response timeout, hand
   * what arrived to the parser to learn why it was refused (short, CRC, address, …).
   */
  | { readonly found: false; readonly skipped: number };

type Candidate = { readonly length: number; readonly exception: boolean } | 'partial' | 'no';

function candidateAt(buf: Uint8Array, i: number, request: ModbusRequest): Candidate {
  if (buf[i] !== request.slave) return 'no';
  if (i + 1 >= buf.length) return 'partial';
  const fc = buf[i + 1];
  let length: number;
  let exception = false;
  if (fc === (request.fc | EXCEPTION_FLAG)) {
    length = EXCEPTION_RESPONSE_LENGTH;
    exception = true;
  } else if (fc === request.fc) {
    length = expectedResponseLength(request);
    if (request.fc === FC_READ_HOLDING_REGISTERS) {
      // The byte count is part of the match: it rules out most false starts before the CRC does.
      if (i + 2 >= buf.length) return 'partial';
      if (buf[i + 2] !== 2 * request.count) return 'no';
    }
  } else {
    return 'no';
  }
  if (i + length > buf.length) return 'partial';
  return hasValidCrc(buf.subarray(i, i + length)) ? { length, exception } : 'no';
}

/** The first valid response to `request` in `buf`, and how many bytes before it were skipped. */
export function findResponse(buf: Uint8Array, request: ModbusRequest): ResponseSearch {
  let firstPartial = -1;
  for (let i = 0; i < buf.length; i++) {
    const c = candidateAt(buf, i, request);
    if (c === 'no') continue;
    if (c === 'partial') {
      if (firstPartial < 0) firstPartial = i;
      continue;
    }
    return { found: true, frame: Buffer.from(buf.subarray(i, i + c.length)), skipped: i, exception: c.exception };
  }
  return { found: false, skipped: firstPartial < 0 ? buf.length : firstPartial };
}
