import Database from 'better-sqlite3';
import { fromRow, type Row } from './device-states.js';
import type { DeviceState } from './types.js';

/**
 * Every device's stored state, read from a store file without opening it for writing: for
 * `gridedge devices list` beside a running gateway (WAL lets a reader in while it writes).
 * Undefined when there is no store there yet (a gateway that never ran) or it cannot be read.
 */
export function readDeviceStates(path: string): DeviceState[] | undefined {
  let db: Database.Database;
  try {
    db = new Database(path, { readonly: true, fileMustExist: true });
  } catch {
    return undefined;
  }
  try {
    return db.prepare<[], Row>('SELECT * FROM device_state').all().map(fromRow);
  } catch {
    return undefined;
  } finally {
    db.close();
  }
}
