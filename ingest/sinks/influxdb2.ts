import { AbortError, HttpError, InfluxDB, RequestTimedOutError, setLogger } from '@influxdata/influxdb-client';
import { SinkWriteError, kindOfStatus, messageOf, type Sink, type SinkLogger } from './sink.js';

/** SPEC §5 `influxdb2` sink. */
export interface InfluxDb2SinkOptions {
  /** Default `influxdb2`. */
  readonly name?: string;
  /** `https://…` (InfluxDB 2.x, Cloud, or anything that speaks `/api/v2/write`). */
  readonly url: string;
  readonly org: string;
  readonly bucket: string;
  readonly token: string;
  /** One HTTP request, ms. Default 10 000 (the client's own default). */
  readonly timeoutMs?: number;
  /** Bodies larger than this many bytes are gzipped. Default 1000 (the client's default). */
  readonly gzipThreshold?: number;
  readonly logger?: SinkLogger;
}

/**
 * Writes prebuilt line protocol to InfluxDB 2.x with `@influxdata/influxdb-client` (SPEC §5).
 *
 * The client's WriteApi batches, flushes on a timer and retries on its own, from an in-memory
 * buffer that a restart loses. All of that is switched off so that the sink runner, reading the
 * durable store, is the only batching and retry loop:
 * - `maxRetries: 0`: a failed flush rejects at once and nothing goes to the retry buffer;
 * - `flushInterval: 0`: no timer, lines leave only on our `flush()`;
 * - `batchSize` above the batch and `maxBatchBytes: Infinity`: `writeRecords` never triggers a
 *   flush of its own, whose error the client swallows (WriteBuffer.add catches it and logs): our
 *   `flush()` would then resolve as though the lines had been written.
 * One WriteApi per write: it is a few small objects, and no state (buffer, retry delays) is shared
 * between batches.
 */
export function createInfluxDb2Sink(options: InfluxDb2SinkOptions): Sink {
  const name = options.name ?? 'influxdb2';
  for (const key of ['url', 'org', 'bucket', 'token'] as const) {
    if (typeof options[key] !== 'string' || options[key] === '') throw new TypeError(`${name} sink: ${key} must be a non-empty string`);
  }
  if (!/^https?:\/\//i.test(options.url)) throw new TypeError(`${name} sink: url must be http:// or https://, got ${JSON.stringify(options.url)}`);
  const timeoutMs = options.timeoutMs ?? 10_000;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new RangeError(`${name} sink: timeoutMs must be a positive number, got ${String(timeoutMs)}`);
  const { org, bucket, logger } = options;

  // The client logs every failed write to the console through a process-wide logger. The runner
  // reports failures itself (health, one warning per outage); keep the client's words at debug.
  setLogger({
    error: (message, err) => logger?.debug({ sink: name, err: err as unknown }, `influxdb-client: ${message}`),
    warn: (message, err) => logger?.debug({ sink: name, err: err as unknown }, `influxdb-client: ${message}`),
  });

  const client = new InfluxDB({ url: options.url, token: options.token, timeout: timeoutMs });
  let closed = false;

  return {
    name,
    async write(lines) {
      if (closed) throw new SinkWriteError('unavailable', `${name} sink is closed`);
      if (lines.length === 0) return;
      const writeApi = client.getWriteApi(org, bucket, 'ms', {
        batchSize: lines.length + 1,
        maxBatchBytes: Infinity,
        flushInterval: 0,
        maxRetries: 0,
        ...(options.gzipThreshold === undefined ? {} : { gzipThreshold: options.gzipThreshold }),
      });
      try {
        // Typed string[], read only (a loop over an ArrayLike).
        writeApi.writeRecords(lines as string[]);
        await writeApi.flush();
      } catch (err) {
        throw classify(err);
      } finally {
        writeApi.dispose();
      }
    },
    close() {
      // A request in flight ends by itself within timeoutMs: the WriteApi has no way to abort it.
      closed = true;
      return Promise.resolve();
    },
  };
}

function classify(err: unknown): SinkWriteError {
  if (err instanceof SinkWriteError) return err;
  if (err instanceof HttpError) {
    const status = err.statusCode;
    const json = err.json as { message?: unknown } | undefined;
    const text = typeof json?.message === 'string' ? json.message : err.body || err.message;
    const retryAfterMs = retryAfter(err.headers?.['retry-after']);
    return new SinkWriteError(kindOfStatus(status), `HTTP ${status}: ${text}`, {
      status,
      cause: err,
      ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
    });
  }
  if (err instanceof RequestTimedOutError || err instanceof AbortError) return new SinkWriteError('unavailable', err.message, { cause: err });
  // ECONNREFUSED, ECONNRESET, … and anything else: retrying is safe, dropping is not.
  return new SinkWriteError('unavailable', messageOf(err), { cause: err });
}

/**
 * RFC 9110 §10.2.3: delay-seconds or an HTTP date. (The client's own `HttpError.retryAfter()`
 * reads the seconds as milliseconds.)
 */
function retryAfter(header: string | string[] | undefined): number | undefined {
  const value = Array.isArray(header) ? header[0] : header;
  if (value === undefined || value === '') return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}
