import type Database from 'better-sqlite3';
import { StoreError } from './errors.js';

export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
}

/**
 * The schema as an append-only list: PRAGMA user_version is the index of the last one applied.
 * Never edit a shipped migration; add the next one.
 */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'readings, consumers, device state, dead letters, key-value',
    sql: `
      -- AUTOINCREMENT, not a plain rowid: retention may delete the newest rows, and a reused seq
      -- would hide new readings from every cursor that had passed it.
      CREATE TABLE readings (
        seq         INTEGER PRIMARY KEY AUTOINCREMENT,
        device_id   TEXT    NOT NULL,
        kind        TEXT    NOT NULL,
        ts          INTEGER NOT NULL,
        received_at INTEGER NOT NULL,
        alarm       INTEGER NOT NULL CHECK (alarm IN (0, 1)),
        bytes       INTEGER NOT NULL,
        json        TEXT    NOT NULL
      );
      -- GET /api/readings?device=&from=&to= (SPEC §8).
      CREATE INDEX readings_device_ts ON readings (device_id, ts);
      -- The priority lane: undelivered alarms without walking the telemetry in front of them.
      CREATE INDEX readings_alarm ON readings (seq) WHERE alarm = 1;

      CREATE TABLE consumers (
        name         TEXT    PRIMARY KEY,
        cursor       INTEGER NOT NULL,
        alarm_cursor INTEGER NOT NULL DEFAULT 0,
        created_at   INTEGER NOT NULL,
        updated_at   INTEGER NOT NULL
      ) WITHOUT ROWID;

      CREATE TABLE device_state (
        device_id TEXT    PRIMARY KEY,
        kind      TEXT    NOT NULL,
        model     TEXT    NOT NULL,
        state     TEXT    NOT NULL,
        metrics   TEXT    NOT NULL,
        last_seen INTEGER NOT NULL,
        last_ts   INTEGER NOT NULL,
        last_seq  INTEGER NOT NULL
      ) WITHOUT ROWID;

      CREATE TABLE dead_letters (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        at            INTEGER NOT NULL,
        source        TEXT    NOT NULL,
        device_id     TEXT,
        reason        TEXT    NOT NULL,
        detail        TEXT    NOT NULL,
        payload       BLOB,
        payload_bytes INTEGER NOT NULL
      );
      -- Counts survive the trimming of dead_letters to its newest N rows.
      CREATE TABLE dead_letter_counts (
        reason TEXT    PRIMARY KEY,
        count  INTEGER NOT NULL
      ) WITHOUT ROWID;

      CREATE TABLE kv (
        key        TEXT    PRIMARY KEY,
        value      TEXT    NOT NULL,
        updated_at INTEGER NOT NULL
      ) WITHOUT ROWID;
    `,
  },
];

export const SCHEMA_VERSION = MIGRATIONS.length;

/** Applies the pending migrations, each in its own transaction with its user_version bump. */
export function migrate(db: Database.Database, migrations: readonly Migration[] = MIGRATIONS): { from: number; to: number } {
  const from = db.pragma('user_version', { simple: true }) as number;
  const latest = migrations.length;
  if (from > latest) {
    // A newer gridedge wrote this file: refusing beats guessing at columns we do not know.
    throw new StoreError('STORE_ERR_SCHEMA', `database is at schema v${from}, this build knows v${latest}`);
  }
  for (const m of migrations) {
    if (m.version <= from) continue;
    db.transaction(() => {
      db.exec(m.sql);
      db.pragma(`user_version = ${m.version}`);
    }).immediate();
  }
  return { from, to: latest };
}
