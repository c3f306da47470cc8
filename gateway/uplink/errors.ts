/** The uplink's error catalogue (STYLE.md). */
export const UPLINK_ERRORS = {
  UPLINK_ERR_CONFIG: 'invalid uplink options',
  UPLINK_ERR_FOREIGN: 'the incident belongs to another gateway',
} as const;

export type UplinkErrorCode = keyof typeof UPLINK_ERRORS;

export class UplinkError extends Error {
  override readonly name = 'UplinkError';
  readonly code: UplinkErrorCode;

  constructor(code: UplinkErrorCode, detail?: string) {
    super(detail ? `${UPLINK_ERRORS[code]}: ${detail}` : UPLINK_ERRORS[code]);
    this.code = code;
  }
}
