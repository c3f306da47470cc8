import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import { IncidentError } from './errors.js';
import { IncidentSchema, isActiveStatus, parseIncidentId, type Incident, type IncidentStatus } from './schema.js';

/**
 * The incident store: its own SQLite file (`incidents.db` in the data directory), so that the
 * readings store's retention, size bound and group commit never touch incidents (SPEC §5:
 * incidents are never dropped). One writer connection, WAL, synchronous=FULL.
 *
 * Tables:
 * - `incidents`: the latest version of every incident (never deleted), with the columns the
 *   manager looks up by: status, grid, the (rule, scope key) of the one active incident (a partial
 *   unique index makes "one open incident per (rule, scope key)", SPEC §7, a database invariant),
 *   and the escalation deadline.
 * - `outbox`: one row per incident change, in commit order (`seq`, AUTOINCREMENT so that a seq is
 *   never reused even after delivered rows are deleted), the payload frozen at that version.
 * - `cursors`: each consumer's durable position (`uplink`: every row with `seq <= cursor` was
 *   PUBACKed; `sink:…`: written to that time-series sink). A row is deleted once every consumer
 *   is past it.
 * - `id_counters`: the last incident sequence number used per Beijing day.
 */

/** The part of a pino logger the store uses. */
export interface IncidentStoreLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface IncidentQuery {
  /** One status or several; default: any. */
  readonly status?: IncidentStatus | readonly IncidentStatus[];
  readonly grid?: string;
  /** Incidents changed at or after this time (gateway ms): what a poller wants. */
  readonly since?: number;
  /** Default 500, at most 5000. Newest opened first. */
  readonly limit?: number;
}

/** One change waiting for (or past) the uplink. */
export interface OutboxRow {
  readonly seq: number;
  readonly incidentId: string;
  readonly version: number;
  readonly grid: string;
  /** The incident JSON at `version` (SPEC §7 payload). */
  readonly payload: string;
  /** The change's time (the incident's `updatedAt`). */
  readonly createdAt: number;
}

export interface OutboxStats {
  /** Rows not yet acknowledged by the upstream broker. */
  readonly depth: number;
  /** `createdAt` of the oldest of them. */
  readonly oldestCreatedAt: number | undefined;
  readonly cursor: number;
  /** The highest seq ever written (0 when none). */
  readonly lastSeq: number;
}

/** What the uplink needs of the store: read after its cursor, acknowledge, be told of new rows. */
export interface IncidentOutbox {
  /** Rows with `seq > afterSeq`, in order, at most `limit`. */
  readAfter(afterSeq: number, limit: number): OutboxRow[];
  /** The durable cursor: every row up to it has been acknowledged. */
  cursor(): number;
  /**
   * Every row with `seq <= seq` has been acknowledged (PUBACK): moves the cursor (never back) and
   * deletes those rows; the incidents themselves stay. Throws INC_ERR_STORE_CURSOR for a seq that
   * was never written.
   */
  ack(seq: number): void;
  stats(): OutboxStats;
  /** Called after every commit that appended rows. Returns the unsubscribe function. */
  subscribe(listener: () => void): () => void;
}

export interface IncidentStore {
  readonly path: string;
  /** Incidents in an active status (open, acknowledged, dispatched), oldest first. */
  loadActive(): Incident[];
  get(id: string): Incident | undefined;
  list(query?: IncidentQuery): Incident[];
  /** The last incident sequence number used on that Beijing day (0 when none). */
  lastIdSeq(day: string): number;
  /**
   * Writes these incident versions and one outbox row each, in one transaction: all or none.
   * A version-1 incident is inserted (and its id's sequence number recorded), others replace the
   * stored version. Returns the outbox seqs (none when the store keeps no outbox).
   */
  appendChanges(incidents: readonly Incident[]): number[];
  /** One change; returns its outbox seq (0 without an outbox). */
  appendChange(incident: Incident): number;
  /** The uplink's view of the change log (consumer `uplink`). */
  readonly outbox: IncidentOutbox;
  /** Another consumer's view (one of `consumers`): a time-series sink's. */
  outboxFor(consumer: string): IncidentOutbox;
  close(): void;
}

export interface OpenIncidentStoreOptions {
  /** The data directory: the store is `<dataDir>/incidents.db`. */
  readonly dataDir?: string;
  /** Or the exact file. */
  readonly path?: string;
  readonly logger: IncidentStoreLogger;
  /**
   * Who reads the change log, each by its own cursor: `uplink`, and `sink:…` for each time-series
   * sink. Default `['uplink']`. With none (no uplink, no sink) no rows are written: nobody would
   * ever acknowledge them and the table would only grow. Incidents are stored either way. Given
   * (the gateway's open), a cursor of a consumer no longer listed is removed, so that it does not
   * hold the rows forever; readers that leave it out change no cursor.
   */
  readonly consumers?: readonly string[];
  /** Deprecated spelling: `false` = `consumers: []`, `true` = `['uplink']`. */
  readonly outbox?: boolean;
}

const SCHEMA_VERSION = 1;
const CURSOR = 'uplink';
const DEFAULT_LIMIT = 500;
const MAX_LIMIT = 5_000;

const DDL = `
CREATE TABLE IF NOT EXISTS incidents (
  id         TEXT PRIMARY KEY,
  status     TEXT NOT NULL,
  active     INTEGER NOT NULL,
  grid       TEXT NOT NULL,
  rule_id    TEXT NOT NULL,
  scope_key  TEXT NOT NULL,
  deadline   INTEGER,
  opened_at  INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  version    INTEGER NOT NULL,
  json       TEXT NOT NULL
) STRICT;
CREATE UNIQUE INDEX IF NOT EXISTS incidents_active_key ON incidents (rule_id, scope_key) WHERE active = 1;
CREATE INDEX IF NOT EXISTS incidents_deadline ON incidents (deadline) WHERE deadline IS NOT NULL;
CREATE INDEX IF NOT EXISTS incidents_grid ON incidents (grid, opened_at);
CREATE INDEX IF NOT EXISTS incidents_updated ON incidents (updated_at);
CREATE TABLE IF NOT EXISTS outbox (
  seq         INTEGER PRIMARY KEY AUTOINCREMENT,
  incident_id TEXT NOT NULL,
  version     INTEGER NOT NULL,
  grid        TEXT NOT NULL,
  payload     TEXT NOT NULL,
  created_at  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS cursors (name TEXT PRIMARY KEY, seq INTEGER NOT NULL) STRICT;
CREATE TABLE IF NOT EXISTS id_counters (day TEXT PRIMARY KEY, seq INTEGER NOT NULL) STRICT;
`;

interface IncidentRow {
  json: string;
}

export function openIncidentStore(options: OpenIncidentStoreOptions): IncidentStore {
  const path = options.path ?? join(options.dataDir ?? '.', 'incidents.db');
  const { logger } = options;
  const consumers = [...new Set(options.consumers ?? (options.outbox === false ? [] : [CURSOR]))];
  const withOutbox = consumers.length > 0;
  const db = openDb(path, logger);

  const version = db.pragma('user_version', { simple: true }) as number;
  if (version > SCHEMA_VERSION) {
    db.close();
    throw new IncidentError('INC_ERR_STORE_SCHEMA', `${path} has schema ${version}, this gridedge knows ${SCHEMA_VERSION}`);
  }
  db.exec(DDL);
  db.pragma(`user_version = ${SCHEMA_VERSION}`);
  db.transaction(() => {
    // Only the gateway's own open (an explicit list) removes consumers; a reader leaves them.
    const known = db.prepare(`SELECT name FROM cursors`).pluck().all() as string[];
    if (options.consumers !== undefined) for (const name of known) if (!consumers.includes(name)) db.prepare(`DELETE FROM cursors WHERE name = ?`).run(name);
    // A new consumer starts where the slowest one is: the rows still kept are the ones not yet delivered to all.
    for (const name of consumers) db.prepare(`INSERT OR IGNORE INTO cursors (name, seq) VALUES (?, 0)`).run(name);
    const min = db.prepare(`SELECT min(seq) FROM cursors`).pluck().get() as number | null;
    db.prepare(`DELETE FROM outbox WHERE seq <= ?`).run(min ?? Number.MAX_SAFE_INTEGER);
  })();

  const q = {
    insert: db.prepare(
      `INSERT INTO incidents (id, status, active, grid, rule_id, scope_key, deadline, opened_at, updated_at, version, json)
       VALUES (@id, @status, @active, @grid, @ruleId, @scopeKey, @deadline, @openedAt, @updatedAt, @version, @json)`,
    ),
    // The version guard makes a lost update (two writers, a bug) fail loudly instead of silently.
    update: db.prepare(
      `UPDATE incidents SET status = @status, active = @active, grid = @grid, deadline = @deadline,
         updated_at = @updatedAt, version = @version, json = @json
       WHERE id = @id AND version = @version - 1`,
    ),
    counter: db.prepare(`INSERT INTO id_counters (day, seq) VALUES (?, ?) ON CONFLICT (day) DO UPDATE SET seq = max(seq, excluded.seq)`),
    lastIdSeq: db.prepare(`SELECT seq FROM id_counters WHERE day = ?`).pluck(),
    outboxInsert: db.prepare(`INSERT INTO outbox (incident_id, version, grid, payload, created_at) VALUES (?, ?, ?, ?, ?)`),
    get: db.prepare(`SELECT json FROM incidents WHERE id = ?`),
    active: db.prepare(`SELECT json FROM incidents WHERE active = 1 ORDER BY opened_at, id`),
    readAfter: db.prepare(`SELECT seq, incident_id AS incidentId, version, grid, payload, created_at AS createdAt FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?`),
    cursor: db.prepare(`SELECT seq FROM cursors WHERE name = ?`).pluck(),
    setCursor: db.prepare(`UPDATE cursors SET seq = ? WHERE name = ? AND seq < ?`),
    prune: db.prepare(`DELETE FROM outbox WHERE seq <= (SELECT min(seq) FROM cursors)`),
    lastSeq: db.prepare(`SELECT seq FROM sqlite_sequence WHERE name = 'outbox'`).pluck(),
    stats: db.prepare(`SELECT count(*) AS depth, min(created_at) AS oldest FROM outbox WHERE seq > ?`),
  };

  let closed = false;
  const listeners = new Set<() => void>();
  const assertOpen = (): void => {
    if (closed) throw new IncidentError('INC_ERR_STORE_CLOSED', path);
  };

  const parse = (row: IncidentRow | undefined): Incident | undefined => {
    if (!row) return undefined;
    const result = IncidentSchema.safeParse(JSON.parse(row.json));
    if (result.success) return result.data;
    // Never drop an incident silently: the row stays, and the operator is told loudly.
    logger.error({ err: result.error, row: row.json.slice(0, 200) }, 'incident store: a stored incident does not match the schema; skipped');
    return undefined;
  };
  const parseAll = (rows: IncidentRow[]): Incident[] => rows.map(parse).filter((i): i is Incident => i !== undefined);

  const write = db.transaction((incidents: readonly Incident[]): number[] => {
    const seqs: number[] = [];
    for (const inc of incidents) {
      const json = JSON.stringify(inc);
      const params = {
        id: inc.id,
        status: inc.status,
        active: isActiveStatus(inc.status) ? 1 : 0,
        grid: inc.grid,
        ruleId: inc.ruleId,
        scopeKey: inc.scopeKey,
        deadline: inc.ackDeadline,
        openedAt: inc.openedAt,
        updatedAt: inc.updatedAt,
        version: inc.version,
        json,
      };
      if (inc.version === 1) {
        q.insert.run(params);
        const parts = parseIncidentId(inc.id);
        if (parts) q.counter.run(parts.day, parts.seq);
      } else if (q.update.run(params).changes !== 1) {
        throw new Error(`incident ${inc.id}: stored version is not ${inc.version - 1}`);
      }
      if (withOutbox) seqs.push(Number(q.outboxInsert.run(inc.id, inc.version, inc.grid, json, inc.updatedAt).lastInsertRowid));
    }
    return seqs;
  });

  const appendChanges = (incidents: readonly Incident[]): number[] => {
    assertOpen();
    if (incidents.length === 0) return [];
    const seqs = write(incidents);
    for (const listener of [...listeners]) {
      try {
        listener();
      } catch (err) {
        logger.error({ err }, 'incident store: an outbox listener threw');
      }
    }
    return seqs;
  };

  const lastSeq = (): number => (q.lastSeq.get() as number | undefined) ?? 0;

  const ack = db.transaction((name: string, seq: number) => {
    if (!Number.isSafeInteger(seq) || seq > lastSeq()) throw new IncidentError('INC_ERR_STORE_CURSOR', `seq ${seq}, last written ${lastSeq()}`);
    q.setCursor.run(seq, name, seq);
    q.prune.run();
  });

  /** One consumer's view of the change log: its own cursor; acks prune what every consumer is past. */
  const consumerView = (name: string): IncidentOutbox => {
    const cursor = (): number => (q.cursor.get(name) as number | undefined) ?? 0;
    return {
      readAfter(afterSeq, limit) {
        assertOpen();
        return q.readAfter.all(afterSeq, Math.max(1, Math.floor(limit))) as OutboxRow[];
      },
      cursor() {
        assertOpen();
        return cursor();
      },
      ack(seq) {
        assertOpen();
        ack(name, seq);
      },
      stats() {
        assertOpen();
        const c = cursor();
        const s = q.stats.get(c) as { depth: number; oldest: number | null };
        return { depth: s.depth, oldestCreatedAt: s.oldest ?? undefined, cursor: c, lastSeq: lastSeq() };
      },
      subscribe(listener) {
        listeners.add(listener);
        return () => listeners.delete(listener);
      },
    };
  };

  const views = new Map<string, IncidentOutbox>();
  const outboxFor = (name: string): IncidentOutbox => {
    const known = views.get(name);
    if (known) return known;
    if (!consumers.includes(name)) throw new IncidentError('INC_ERR_STORE_CURSOR', `${name} is not a consumer of ${path} (${consumers.join(', ') || 'none'})`);
    const view = consumerView(name);
    views.set(name, view);
    return view;
  };

  return {
    path,
    loadActive() {
      assertOpen();
      return parseAll(q.active.all() as IncidentRow[]);
    },
    get(id) {
      assertOpen();
      return parse(q.get.get(id) as IncidentRow | undefined);
    },
    list(query = {}) {
      assertOpen();
      const where: string[] = [];
      const args: (string | number)[] = [];
      if (query.status !== undefined) {
        const statuses = typeof query.status === 'string' ? [query.status] : [...query.status];
        if (statuses.length === 0) return [];
        where.push(`status IN (${statuses.map(() => '?').join(', ')})`);
        args.push(...statuses);
      }
      if (query.grid !== undefined) {
        where.push('grid = ?');
        args.push(query.grid);
      }
      if (query.since !== undefined) {
        where.push('updated_at >= ?');
        args.push(query.since);
      }
      const limit = Math.min(MAX_LIMIT, Math.max(1, Math.floor(query.limit ?? DEFAULT_LIMIT)));
      const sql = `SELECT json FROM incidents ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY opened_at DESC, id DESC LIMIT ${limit}`;
      return parseAll(db.prepare(sql).all(...args) as IncidentRow[]);
    },
    lastIdSeq(day) {
      assertOpen();
      return (q.lastIdSeq.get(day) as number | undefined) ?? 0;
    },
    appendChanges,
    appendChange(incident) {
      return appendChanges([incident])[0] ?? 0;
    },
    // Without an uplink consumer the uplink never asks; a view of nothing keeps the type simple.
    get outbox() {
      return consumers.includes(CURSOR) ? outboxFor(CURSOR) : consumerView(CURSOR);
    },
    outboxFor,
    close() {
      if (closed) return;
      closed = true;
      listeners.clear();
      db.close();
    },
  };
}

function openDb(path: string, logger: IncidentStoreLogger): Database.Database {
  let db: Database.Database;
  try {
    mkdirSync(dirname(path), { recursive: true });
    db = new Database(path);
  } catch (err) {
    throw new IncidentError('INC_ERR_STORE_OPEN', path, { cause: err });
  }
  try {
    const mode = db.pragma('journal_mode = WAL', { simple: true });
    if (mode !== 'wal') logger.warn({ path, mode }, 'incident store: WAL is not available here; using the rollback journal');
    // FULL: in WAL mode NORMAL fsyncs only at checkpoints, so a power cut could roll back an
    // incident (an SOS) that had already been announced to the grid worker and the city.
    db.pragma('synchronous = FULL');
    db.pragma('busy_timeout = 5000');
    db.pragma('foreign_keys = ON');
    return db;
  } catch (err) {
    db.close();
    throw new IncidentError('INC_ERR_STORE_OPEN', path, { cause: err });
  }
}
