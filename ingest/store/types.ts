import type { Reading } from '../../devices/reading.js';

/** The part of a pino logger the store uses (a pino `Logger` or child fits). Errors go under `err`. */
export interface StoreLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

/** A committed reading and its sequence number (the order of commit, never reused). */
export interface StoredReading {
  readonly seq: number;
  readonly reading: Reading;
}

export interface ConsumerInfo {
  readonly name: string;
  /** Every reading with `seq <= cursor` has been delivered (acknowledged) by this consumer. */
  readonly cursor: number;
  /** Alarms with `seq <= alarmCursor` were delivered ahead of the cursor through the priority lane. */
  readonly alarmCursor: number;
}

export interface RegisterConsumerOptions {
  /**
   * Where a consumer that does not exist yet starts: `end` (the default) delivers only readings
   * committed from now on, so a sink added to a gateway that has months of history does not
   * replay it; `start` delivers everything still in the store. An existing consumer keeps its cursor.
   */
  readonly from?: 'end' | 'start';
}

/** The last known state of a device, written in the same transaction as the reading that set it. */
export interface DeviceState {
  readonly deviceId: string;
  readonly kind: Reading['kind'];
  readonly model: string;
  /** State flags, merged over every reading so far (a reading that omits a flag keeps the old value). */
  readonly state: Readonly<Record<string, boolean>>;
  /** Metrics, merged the same way: the last value of each metric the device ever reported. */
  readonly metrics: Readonly<Record<string, number>>;
  /** `receivedAt` of the last reading (gateway clock): offline timers resume from here. */
  readonly lastSeen: number;
  /** `ts` of the last reading. */
  readonly lastTs: number;
  readonly lastSeq: number;
}

export type DeadLetterSource = 'mqtt' | 'serial' | `sink:${string}`;

export interface DeadLetterInput {
  readonly source: DeadLetterSource;
  readonly deviceId?: string;
  /** A stable code, e.g. `DEV_ERR_SCHEMA`, `MQTT_ERR_TOO_LARGE`, `SINK_ERR_REJECTED`. */
  readonly reason: string;
  /** Human-readable and safe to show an operator (no secrets, no residents' data). */
  readonly detail: string;
  /** The raw input; kept up to `deadLetterPayloadMaxBytes`, its full length in `payloadBytes`. */
  readonly payload?: Buffer;
}

export interface DeadLetter {
  readonly id: number;
  readonly at: number;
  readonly source: string;
  readonly deviceId: string | undefined;
  readonly reason: string;
  readonly detail: string;
  readonly payload: Buffer | undefined;
  /** Length of the original payload (it may have been truncated). */
  readonly payloadBytes: number;
}

export interface ReadingQuery {
  readonly deviceId: string;
  /** Inclusive, on the reading's `ts`. */
  readonly from?: number;
  /** Inclusive, on the reading's `ts`. */
  readonly to?: number;
  /** Default 1000, at most 10,000. */
  readonly limit?: number;
  /** `asc` (oldest first, the default) or `desc` (newest first: a device's recent readings). */
  readonly order?: 'asc' | 'desc';
}

export interface PruneOptions {
  /** Readings received longer ago than this (gateway clock) and acknowledged by every consumer go. */
  readonly retentionMs: number;
  /**
   * Rows per DELETE transaction; the event loop is yielded between chunks. Default 500: each
   * deleted row also touches the (device_id, ts) index, ~25 µs a row on this box's disk, so a
   * chunk blocks for ~15 ms.
   */
  readonly chunkRows?: number;
  /** Stop after this many chunks (the next call goes on). Default: until nothing is left. */
  readonly maxChunks?: number;
}

export interface StoreStats {
  /** Readings in the store. */
  readonly rows: number;
  /** Sum of the readings' JSON bytes. */
  readonly bytes: number;
  /** Highest sequence number ever committed (0 when none). */
  readonly lastSeq: number;
  /** JSON bytes of readings not yet acknowledged by every consumer (the outbox, SPEC §5). */
  readonly outboxBytes: number;
  readonly outboxMaxBytes: number;
  /** Readings behind, per consumer. */
  readonly pending: Readonly<Record<string, number>>;
  /** Telemetry dropped since open because the outbox was over its bound (SPEC §5). */
  readonly droppedTelemetry: number;
  /** Delivered history deleted since open to make room when the database was full. */
  readonly prunedForSpace: number;
  /** Disk-full mode is on (`refuseTelemetry`): plain telemetry is refused, alarms and state changes are stored. */
  readonly telemetryRefused: boolean;
  /** Plain telemetry refused since open in disk-full mode (not stored; the pipeline drops it). */
  readonly refusedTelemetry: number;
  /** Dead letters not kept since open in disk-full mode. */
  readonly refusedDeadLetters: number;
  readonly commitBatches: number;
  readonly committedRows: number;
  readonly failedBatches: number;
  /** Wall time of the last commit transaction, fsync included. */
  readonly lastCommitMs: number;
  readonly lastBatchRows: number;
  /** Appends and dead letters waiting for the next group commit. */
  readonly queued: number;
  readonly deadLetters: number;
  /** Dead letters ever recorded, by reason (not only the newest N still kept). */
  readonly deadLettersByReason: Readonly<Record<string, number>>;
  /** Database file plus its WAL. */
  readonly dbFileBytes: number;
  /** What the connection really runs with (a regression to NORMAL would be silent otherwise). */
  readonly journalMode: string;
  /** PRAGMA synchronous: 2 is FULL. */
  readonly synchronous: number;
}

export type CommitListener = (batch: readonly StoredReading[]) => void;
