import type Database from 'better-sqlite3';

/**
 * Retention of the embedded history. One chunk is one small transaction over the oldest rows
 * (by seq, which follows the gateway clock), so that a month of expired readings is never one
 * DELETE holding the writer lock and the event loop for seconds.
 */
export function prepareRetention(db: Database.Database) {
  const s = {
    // Only the oldest `n` rows at or below `floor` are looked at: when none of them has expired,
    // nothing younger has either, and the call costs O(n) instead of a scan of the table.
    chunk: db.prepare<[number, number, number], { bytes: number }>(
      'DELETE FROM readings WHERE seq IN (SELECT seq FROM readings WHERE seq <= ? ORDER BY seq LIMIT ?) AND received_at < ? RETURNING bytes',
    ),
  };
  return {
    /** Deletes expired rows among the oldest `chunkRows` rows with `seq <= floor`. */
    deleteChunk(floor: number, chunkRows: number, cutoff: number): { rows: number; bytes: number } {
      const deleted = db.transaction(() => s.chunk.all(floor, chunkRows, cutoff)).immediate();
      let bytes = 0;
      for (const d of deleted) bytes += d.bytes;
      return { rows: deleted.length, bytes };
    },
  };
}
