import { z } from 'zod';
import { StoreError } from './errors.js';
import type { StoreLogger } from './types.js';

const MiB = 1024 * 1024;

/** The numeric options, with their defaults (STYLE.md: defaults live in the schema). */
export const StoreTuningSchema = z.object({
  groupCommit: z
    .object({
      /** How long the first row of a batch may wait for company. Alarms never wait. */
      maxDelayMs: z.number().finite().min(0).max(60_000).default(5),
      /** A batch this large commits at once. */
      maxRows: z.number().int().min(1).max(100_000).default(1000),
    })
    .prefault({}),
  /** SPEC §5: bound on the JSON bytes of readings not yet delivered to every consumer. */
  outboxMaxBytes: z
    .number()
    .int()
    .positive()
    .default(512 * MiB),
  /** Hard cap on the database file (SQLite `max_page_count`), e.g. to keep an SD card from filling. */
  maxDbBytes: z.number().int().positive().optional(),
  /** Keep the newest N dead letters. */
  deadLetterMax: z.number().int().positive().default(10_000),
  /** A dead letter's payload is truncated to this many bytes (an oversized payload is itself a reason). */
  deadLetterPayloadMaxBytes: z.number().int().nonnegative().default(16 * 1024),
  /**
   * How long a write waits for another connection's lock before SQLITE_BUSY. Short: the wait
   * blocks the event loop, and this connection is meant to be the only writer (WAL readers never
   * take that lock).
   */
  busyTimeoutMs: z.number().int().nonnegative().default(1000),
});
export type StoreTuning = z.infer<typeof StoreTuningSchema>;

export interface OpenStoreOptions extends z.input<typeof StoreTuningSchema> {
  /** The database file, in the gateway's data directory (created with its directory when missing). */
  readonly path: string;
  /** Milliseconds since the epoch; injected so that retention and ages are testable. */
  readonly clock: () => number;
  readonly logger: StoreLogger;
  /**
   * Called synchronously, inside the commit, when a write fails with SQLITE_FULL (the gateway's
   * disk guard: SPEC-NOTES "Disk full"). Returns true when it freed space there and then (it
   * released its reserve file): the batch is tried again at once, so the alarm that hit the full
   * disk is stored rather than refused.
   */
  readonly onFull?: () => boolean;
}

export function parseTuning(options: OpenStoreOptions): StoreTuning {
  if (typeof options.path !== 'string' || options.path.length === 0) {
    throw new StoreError('STORE_ERR_CONFIG', 'path must be a non-empty file path');
  }
  if (typeof options.clock !== 'function') throw new StoreError('STORE_ERR_CONFIG', 'clock must be a function returning ms');
  const logger = options.logger as Partial<StoreLogger> | undefined;
  if (typeof logger?.info !== 'function' || typeof logger.warn !== 'function' || typeof logger.error !== 'function') {
    throw new StoreError('STORE_ERR_CONFIG', 'logger must have info, warn and error methods (a pino logger)');
  }
  if (options.onFull !== undefined && typeof options.onFull !== 'function') throw new StoreError('STORE_ERR_CONFIG', 'onFull must be a function');
  const { path: _p, clock: _c, logger: _l, onFull: _f, ...tuning } = options;
  const parsed = StoreTuningSchema.safeParse(tuning);
  if (!parsed.success) throw new StoreError('STORE_ERR_CONFIG', z.prettifyError(parsed.error));
  return Object.freeze(parsed.data);
}
