/**
 * The store's error catalogue (STYLE.md: one catalogue per folder, stable codes). Callers branch
 * on `code`, never on the message.
 */
import { codedError } from '../../devices/coded-error.js';

export const STORE_ERRORS = {
  STORE_ERR_CONFIG: 'invalid store options',
  STORE_ERR_OPEN: 'cannot open the store database',
  STORE_ERR_SCHEMA: 'the database schema is newer than this gridedge',
  STORE_ERR_WRITE: 'the transaction holding this write did not commit',
  STORE_ERR_CLOSED: 'the store is closed',
  STORE_ERR_UNKNOWN_CONSUMER: 'no consumer of that name is registered',
  STORE_ERR_CURSOR: 'a consumer acknowledged a sequence number that was never committed',
  STORE_ERR_FULL: 'the data directory is full: plain telemetry is not stored until space is free again (alarms and state changes are)',
} as const;

export type StoreErrorCode = keyof typeof STORE_ERRORS;

export class StoreError extends codedError('StoreError', STORE_ERRORS) {}

export function isStoreError(err: unknown, code?: StoreErrorCode): err is StoreError {
  return err instanceof StoreError && (code === undefined || err.code === code);
}

/** The SQLite result code (`SQLITE_FULL`, `SQLITE_IOERR_WRITE`, …) of a better-sqlite3 error. */
export function sqliteCode(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string') return err.code;
  return undefined;
}
