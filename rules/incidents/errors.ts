/**
 * The incident error catalogue (STYLE.md: one catalogue per folder, stable codes). Callers (the
 * HTTP API, the uplink's command handler) branch on `code`, never on the message.
 */
import { codedError } from '../../devices/coded-error.js';

export const INC_ERRORS = {
  INC_ERR_NOT_FOUND: 'no incident with that id',
  INC_ERR_TRANSITION: 'that action is not allowed in the incident’s current status',
  INC_ERR_NOT_STARTED: 'the incident manager has not been started',
  INC_ERR_STORE_OPEN: 'cannot open the incident store',
  INC_ERR_STORE_SCHEMA: 'the incident store was written by a newer gridedge',
  INC_ERR_STORE_CLOSED: 'the incident store is closed',
  INC_ERR_STORE_CURSOR: 'the uplink acknowledged an outbox row that was never written',
} as const;

export type IncidentErrorCode = keyof typeof INC_ERRORS;

export class IncidentError extends codedError('IncidentError', INC_ERRORS) {}

export function isIncidentError(err: unknown, code?: IncidentErrorCode): err is IncidentError {
  return err instanceof IncidentError && (code === undefined || err.code === code);
}
