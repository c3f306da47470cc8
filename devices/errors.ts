/**
 * The codec error catalogue. Wire input is never trusted: a codec returns one of these instead
 * of throwing, and the source that called it counts the rejection by `code` and dead-letters it.
 */
export const DEVICE_ERRORS = {
  DEV_ERR_UTF8: 'payload is not valid UTF-8',
  DEV_ERR_JSON: 'payload is not valid JSON',
  DEV_ERR_SCHEMA: 'payload does not match the model schema',
  DEV_ERR_RANGE: 'a value is out of its range',
  DEV_ERR_UNKNOWN_CODE: 'unknown status or key code',
  DEV_ERR_TOO_LARGE: 'payload is larger than allowed',
  DEV_ERR_SHORT_FRAME: 'frame is shorter than its function needs',
  DEV_ERR_CRC: 'frame CRC does not match',
  DEV_ERR_SLAVE_ADDRESS: 'frame is from another slave address',
  DEV_ERR_FUNCTION: 'frame has an unexpected function code',
  DEV_ERR_EXCEPTION: 'slave answered with a Modbus exception',
  DEV_ERR_BYTE_COUNT: 'frame byte count does not match the request',
  DEV_ERR_NOT_REGISTERED: 'no registered device for this address or id',
} as const;

export type DeviceErrorCode = keyof typeof DEVICE_ERRORS;

export interface DecodeError {
  readonly code: DeviceErrorCode;
  /** Human-readable, safe to log: never contains secrets or residents' data. */
  readonly message: string;
  /** Where in the payload, when known (a zod path or a register address). */
  readonly path?: readonly (string | number)[];
}

export type Result<T, E = DecodeError> = { ok: true; value: T } | { ok: false; error: E };

export function ok<T>(value: T): { ok: true; value: T } {
  return { ok: true, value };
}

export function fail(code: DeviceErrorCode, detail?: string, path?: readonly (string | number)[]): { ok: false; error: DecodeError } {
  const message = detail ? `${DEVICE_ERRORS[code]}: ${detail}` : DEVICE_ERRORS[code];
  return { ok: false, error: path ? { code, message, path } : { code, message } };
}
