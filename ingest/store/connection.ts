import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { StoreError } from './errors.js';
import type { StoreTuning } from './options.js';
import type { StoreLogger } from './types.js';

/** Opens the one writer connection with the pragmas the durability contract (SPEC §3) rests on. */
export function openConnection(path: string, tuning: StoreTuning, logger: StoreLogger): Database.Database {
  let db: Database.Database;
  try {
    mkdirSync(dirname(path), { recursive: true });
    db = new Database(path);
  } catch (err) {
    throw new StoreError('STORE_ERR_OPEN', path, { cause: err });
  }
  try {
    // WAL: readers (the API, a second process) never block the writer, and a commit is one
    // sequential append to the log.
    const mode = db.pragma('journal_mode = WAL', { simple: true });
    if (mode !== 'wal') logger.warn({ path, mode }, 'store: WAL is not available here; using the rollback journal');
    // FULL, not NORMAL: in WAL mode NORMAL fsyncs only at checkpoints, so a power cut (which this
    // box may suffer) can roll back transactions that had committed — after their PUBACKs went
    // out, i.e. a device was told its SOS was stored when it was not. FULL fsyncs the WAL at every
    // commit; group commit pays that one fsync per batch instead of per reading.
    db.pragma('synchronous = FULL');
    db.pragma(`busy_timeout = ${tuning.busyTimeoutMs}`);
    // Truncate the WAL back to 64 MiB after a checkpoint instead of keeping its high-water mark.
    db.pragma('journal_size_limit = 67108864');
    db.pragma('temp_store = MEMORY');
    if (tuning.maxDbBytes !== undefined) {
      const pageSize = db.pragma('page_size', { simple: true }) as number;
      db.pragma(`max_page_count = ${Math.max(1, Math.floor(tuning.maxDbBytes / pageSize))}`);
    }
    return db;
  } catch (err) {
    db.close();
    throw new StoreError('STORE_ERR_OPEN', path, { cause: err });
  }
}
