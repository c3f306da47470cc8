/** The uplink's error catalogue (STYLE.md). */
import { codedError } from '../../devices/coded-error.js';

export const UPLINK_ERRORS = {
  UPLINK_ERR_CONFIG: 'invalid uplink options',
  UPLINK_ERR_FOREIGN: 'the incident belongs to another gateway',
} as const;

export type UplinkErrorCode = keyof typeof UPLINK_ERRORS;

export class UplinkError extends codedError('UplinkError', UPLINK_ERRORS) {}
