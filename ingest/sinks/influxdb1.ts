import { InfluxDB } from 'influx';
import type { IBackoffStrategy } from 'influx/lib/src/backoff/backoff.js';
import { Pool, RequestError, ServiceNotAvailableError } from 'influx/lib/src/pool.js';
import { NETWORK_ERROR_CODES, SinkWriteError, errorCode, kindOfStatus, messageOf, type Sink, type SinkLogger } from './sink.js';

/** SPEC §5 `influxdb1` sink. */
export interface InfluxDb1SinkOptions {
  /** Default `influxdb1`. */
  readonly name?: string;
  /** `http://host:8086` or `https://…`, optionally with a path prefix (a reverse proxy). */
  readonly url: string;
  readonly database: string;
  /** Default: the database's default retention policy. */
  readonly retentionPolicy?: string;
  readonly username?: string;
  readonly password?: string;
  /** Create the database when it is missing (SPEC §5). Default true. */
  readonly createDatabase?: boolean;
  /** One HTTP request, ms. Default 10 000. */
  readonly timeoutMs?: number;
  readonly logger?: SinkLogger;
}

/**
 * The `influx` package's pool, with its own retry loop and host black-listing turned off: the
 * sink runner is the only retry loop (SPEC §5). Left at its defaults the pool retries twice and,
 * after a refused connection, takes the host out of rotation for 300 ms … 10 s, answering "No host
 * available" without trying, which would hide the server coming back from our backoff.
 */
const NO_BACKOFF: IBackoffStrategy = { getDelay: () => 0, next: () => NO_BACKOFF, reset: () => NO_BACKOFF };

/**
 * Writes prebuilt line protocol to InfluxDB 1.x with the `influx` package (SPEC §5).
 *
 * The package has no public call that sends raw line protocol: `writePoints` takes point objects
 * and builds the lines itself (about 3.5× the cost of ours, see line-protocol.ts; and it escapes
 * neither the measurement nor line breaks in tags). Its `Pool` (`influx/lib/src/pool`, the
 * request layer `writePoints` itself ends in) is a typed, exported class, so the lines go through
 * `Pool.discard()` to `/write` exactly as `writePoints` would send them. The `InfluxDB` client is
 * used for the admin statements (CREATE DATABASE, SHOW RETENTION POLICIES).
 */
export function createInfluxDb1Sink(options: InfluxDb1SinkOptions): Sink {
  const name = options.name ?? 'influxdb1';
  const host = parseUrl(name, options.url);
  if (typeof options.database !== 'string' || options.database === '') {
    throw new TypeError(`${name} sink: database must be a non-empty string`);
  }
  const timeoutMs = options.timeoutMs ?? 10_000;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new RangeError(`${name} sink: timeoutMs must be a positive number, got ${String(timeoutMs)}`);
  const createDatabase = options.createDatabase ?? true;
  const { database, retentionPolicy, logger } = options;
  const auth = options.username === undefined ? undefined : `${options.username}:${options.password ?? ''}`;
  const poolOptions = { maxRetries: 0, requestTimeout: timeoutMs, backoff: NO_BACKOFF };

  const pool = new Pool(poolOptions);
  pool.addHost(host.url, {});
  const admin = new InfluxDB({
    host: host.host,
    port: host.port,
    protocol: host.protocol,
    path: host.path,
    database,
    // Without a username the package sends `root:root`; null (not undefined) keeps it from
    // sending credentials nobody configured.
    username: options.username ?? (null as unknown as string),
    password: options.password ?? '',
    pool: poolOptions,
  });

  let databaseReady = !createDatabase;
  let closed = false;
  const inFlight = new Set<AbortController>();

  const ensureDatabase = async (): Promise<void> => {
    try {
      // CREATE DATABASE is idempotent in InfluxDB 1.x: no need to list the databases first.
      await admin.createDatabase(database);
      logger?.info({ sink: name, database }, 'influxdb1: database ensured');
    } catch (err) {
      const e = classify(err);
      // A user without admin rights cannot create it, but it may well exist: go on and let the
      // write say whether it does.
      if (e.kind !== 'config') throw e;
      logger?.warn({ sink: name, database, err: e }, 'influxdb1: cannot create the database; writing anyway');
    }
    databaseReady = true;
  };

  const send = async (body: string): Promise<void> => {
    const controller = new AbortController();
    inFlight.add(controller);
    try {
      await pool.discard({
        method: 'POST',
        path: '/write',
        query: { db: database, precision: 'ms', ...(retentionPolicy === undefined ? {} : { rp: retentionPolicy }) },
        body,
        ...(auth === undefined ? {} : { auth }),
        signal: controller.signal,
      });
    } finally {
      inFlight.delete(controller);
    }
  };

  /** InfluxDB answers an unknown retention policy with a bare 500, which the pool reduces to its status text. */
  const retentionPolicyMissing = async (): Promise<boolean> => {
    if (retentionPolicy === undefined) return false;
    try {
      const policies = await admin.showRetentionPolicies(database);
      return !policies.some((p) => p.name === retentionPolicy);
    } catch {
      return false;
    }
  };

  return {
    name,
    async write(lines) {
      if (closed) throw new SinkWriteError('unavailable', `${name} sink is closed`);
      if (lines.length === 0) return;
      if (!databaseReady) await ensureDatabase();
      const body = lines.join('\n');
      try {
        await send(body);
      } catch (err) {
        let e = classify(err);
        if (e.status === 404 && createDatabase && /database not found/i.test(e.message)) {
          // Dropped behind our back (or never created because the first try lacked rights):
          // create it again and retry this batch once, so a lost database costs no backoff.
          databaseReady = false;
          await ensureDatabase();
          try {
            await send(body);
            return;
          } catch (err2) {
            e = classify(err2);
          }
        }
        if (e.kind === 'unavailable' && e.status === undefined && (await retentionPolicyMissing())) {
          e = new SinkWriteError('config', `retention policy not found: ${String(retentionPolicy)} on database ${database}`, { cause: e });
        }
        throw e;
      }
    },
    close() {
      closed = true;
      for (const controller of inFlight) controller.abort();
      return Promise.resolve();
    },
  };
}

function parseUrl(name: string, url: string): { url: string; host: string; port: number; protocol: 'http' | 'https'; path: string } {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new TypeError(`${name} sink: url must be an http(s) URL, got ${JSON.stringify(url)}`);
  }
  const protocol = parsed.protocol.slice(0, -1);
  if (protocol !== 'http' && protocol !== 'https') throw new TypeError(`${name} sink: url must be http:// or https://, got ${JSON.stringify(url)}`);
  if (parsed.username !== '' || parsed.password !== '') throw new TypeError(`${name} sink: put credentials in username/password, not in the url`);
  const port = parsed.port === '' ? (protocol === 'https' ? 443 : 80) : Number(parsed.port);
  const path = parsed.pathname.replace(/\/+$/, '');
  // WHATWG keeps IPv6 brackets in `hostname`, which is what both of the package's URL builders need.
  return { url: `${protocol}://${parsed.hostname}:${port}${path}`, host: parsed.hostname, port, protocol, path };
}

/** Error → kind, for the `influx` package's pool (see sink.ts for what each kind means). */
function classify(err: unknown): SinkWriteError {
  if (err instanceof SinkWriteError) return err;
  if (err instanceof RequestError) {
    const status = err.res.statusCode ?? 0;
    return new SinkWriteError(kindOfStatus(status), `HTTP ${status}: ${serverMessage(err.message)}`, { status, cause: err });
  }
  if (err instanceof ServiceNotAvailableError) {
    // HTTP 5xx (the pool keeps only the status text), "Request timed out", "No host available".
    return new SinkWriteError('unavailable', err.message || 'service unavailable', { cause: err });
  }
  const code = errorCode(err);
  if (code !== undefined && NETWORK_ERROR_CODES.has(code)) return new SinkWriteError('unavailable', messageOf(err), { cause: err });
  // Anything else (a socket error without a code, …): retrying is safe, dropping is not.
  return new SinkWriteError('unavailable', messageOf(err), { cause: err });
}

/** `A 400 Bad Request error occurred: {"error":"partial write: … dropped=1"}` → `partial write: … dropped=1`. */
function serverMessage(message: string): string {
  const start = message.indexOf('{');
  if (start >= 0) {
    try {
      const json = JSON.parse(message.slice(start)) as { error?: unknown; message?: unknown };
      if (typeof json.error === 'string') return json.error;
      if (typeof json.message === 'string') return json.message;
    } catch {
      // not JSON: keep the text
    }
  }
  return message.replace(/^A \d+ [^:]*error occurred: ?/, '');
}
