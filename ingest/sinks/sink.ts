/**
 * The seam between the sink runner and a time-series server (SPEC §5). A sink only sends: the
 * runner owns batching, retry, backoff and dead-lettering, so a sink must not retry on its own.
 */
export interface Sink {
  /** Stable name for config, health and logs (`embedded`, `influxdb1`, …). */
  readonly name: string;
  /**
   * Writes prebuilt line protocol (ms precision), all lines in one request. Resolves when the
   * server has accepted every line; rejects with a {@link SinkWriteError} otherwise.
   */
  write(lines: readonly string[]): Promise<void>;
  /** Releases the client (aborts a request still in flight). Idempotent. */
  close(): Promise<void>;
}

/**
 * What a failed write means for the runner:
 * - `rejected`: the server refused points of the batch (HTTP 400, e.g. a field type conflict or a
 *   line it cannot parse). InfluxDB keeps the other points of the batch; the runner bisects to find
 *   the bad ones and dead-letters them.
 * - `unavailable`: connection refused or reset, a timeout, HTTP 5xx or 429: retry the same batch
 *   with backoff, never drop it.
 * - `config`: the server answered but our configuration is wrong (401, 403, a database or
 *   retention policy that does not exist): retry slowly and report it in health.
 */
export type SinkWriteErrorKind = 'rejected' | 'unavailable' | 'config';

/** The sink error catalogue (STYLE.md: stable codes; branch on `kind`/`code`, never on message). */
export const SINK_ERRORS = {
  SINK_ERR_REJECTED: 'the server rejected points of the batch',
  SINK_ERR_UNAVAILABLE: 'the server is unavailable',
  SINK_ERR_CONFIG: 'the server refused the sink configuration',
} as const;

export type SinkErrorCode = keyof typeof SINK_ERRORS;

const CODE_OF_KIND: Readonly<Record<SinkWriteErrorKind, SinkErrorCode>> = {
  rejected: 'SINK_ERR_REJECTED',
  unavailable: 'SINK_ERR_UNAVAILABLE',
  config: 'SINK_ERR_CONFIG',
};

export interface SinkWriteErrorOptions {
  /** HTTP status, when the server answered. */
  readonly status?: number;
  /** The server asked us to wait this long (a `Retry-After` header), ms. */
  readonly retryAfterMs?: number;
  readonly cause?: unknown;
}

export class SinkWriteError extends Error {
  override readonly name = 'SinkWriteError';
  readonly kind: SinkWriteErrorKind;
  readonly code: SinkErrorCode;
  readonly status: number | undefined;
  readonly retryAfterMs: number | undefined;

  /** `message` is the server's own words where there are any: it goes into dead letters and health. */
  constructor(kind: SinkWriteErrorKind, message: string, options: SinkWriteErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.kind = kind;
    this.code = CODE_OF_KIND[kind];
    this.status = options.status;
    this.retryAfterMs = options.retryAfterMs;
  }
}

export function isSinkWriteError(err: unknown, kind?: SinkWriteErrorKind): err is SinkWriteError {
  return err instanceof SinkWriteError && (kind === undefined || err.kind === kind);
}

/** Node socket error codes that mean "the server is not there (yet)": retry. */
export const NETWORK_ERROR_CODES: ReadonlySet<string> = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'ESOCKETTIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'EHOSTDOWN',
  'ENOTFOUND',
  'EAI_AGAIN',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'ABORT_ERR',
]);

/** The `code` of a Node system error, when there is one. */
export function errorCode(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string') return err.code;
  return undefined;
}

/** HTTP status → kind for InfluxDB's write endpoints (1.x `/write`, 2.x `/api/v2/write`). */
export function kindOfStatus(status: number): SinkWriteErrorKind {
  if (status === 408 || status === 425 || status === 429 || status >= 500) return 'unavailable';
  // 413: the body is over the server's limit. Bisecting the batch is exactly what helps, and a
  // single point that is still too large can only be dead-lettered.
  if (status === 400 || status === 413 || status === 422) return 'rejected';
  // 401, 403, 404 (database / bucket / org not found), 405 (not an InfluxDB at that URL), …
  return 'config';
}

/** The message of anything thrown, for logs and health. */
export function messageOf(err: unknown): string {
  if (err instanceof Error) {
    const code = errorCode(err);
    const text = err.message || err.name;
    return code !== undefined && !text.includes(code) ? `${code}: ${text}` : text;
  }
  return String(err);
}

/** The part of a pino logger the sinks use (a pino `Logger` or child fits). Errors go under `err`. */
export interface SinkLogger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}
