import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Reading } from '../../devices/reading.js';
import { createInfluxDb2Sink, type InfluxDb2SinkOptions } from '../../ingest/sinks/influxdb2.js';
import { readingToLine } from '../../ingest/sinks/line-protocol.js';
import { createSinkRunner, type SinkDeadLetter, type SinkSource, type SinkSourceEntry } from '../../ingest/sinks/runner.js';
import { SinkWriteError, isSinkWriteError } from '../../ingest/sinks/sink.js';
import { freePort } from '../helpers/ports.js';

// SPEC §5 influxdb2 sink. Debian has no InfluxDB 2.x, so this is an HTTP double (STYLE.md: mocks
// only where nothing real can run) that checks exactly what the real @influxdata/influxdb-client
// sends, and answers as a 2.x server does: 204, 400 with a JSON error, 401, 404, 503.

const logger = pino({ level: 'silent' });
const GRID = '110101013001002';
const TOKEN = 'gw-dhs-07:s3cr3t/token==';

interface Received {
  method: string;
  path: string;
  query: Record<string, string>;
  headers: IncomingHttpHeaders;
  /** The body as line protocol (gunzipped when the client compressed it). */
  body: string;
  rawBytes: number;
}

interface Answer {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
}

/** A 2.x write endpoint: records every request, answers from `answer(request, n)`. */
class V2Double {
  readonly received: Received[] = [];
  answer: (req: Received, n: number) => Answer = () => ({ status: 204 });
  private server: Server | undefined;
  url = '';

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const raw = Buffer.concat(chunks);
        const url = new URL(req.url ?? '/', 'http://double');
        const received: Received = {
          method: req.method ?? '',
          path: url.pathname,
          query: Object.fromEntries(url.searchParams),
          headers: req.headers,
          body: (req.headers['content-encoding'] === 'gzip' ? gunzipSync(raw) : raw).toString('utf8'),
          rawBytes: raw.length,
        };
        this.received.push(received);
        const a = this.answer(received, this.received.length);
        const body = a.body === undefined ? '' : JSON.stringify(a.body);
        res.writeHead(a.status, { ...(body ? { 'content-type': 'application/json; charset=utf-8' } : {}), ...a.headers });
        res.end(body);
      });
    });
    const port = await freePort();
    await new Promise<void>((resolve) => this.server?.listen(port, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }
  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    server?.closeAllConnections();
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  }
}

/** The same in-memory outbox as the 1.x test, on the real clock. */
class MemorySource implements SinkSource {
  private readonly entries: SinkSourceEntry[] = [];
  private seq = 0;
  cursor = 0;
  readonly acks: number[] = [];
  append(readings: readonly Reading[]): void {
    for (const reading of readings) this.entries.push({ seq: ++this.seq, reading });
  }
  read(limit: number, after = this.cursor): readonly SinkSourceEntry[] {
    return this.entries.filter((e) => e.seq > after).slice(0, limit);
  }
  ack(seq: number): void {
    this.acks.push(seq);
    this.cursor = seq;
  }
  depth(): number {
    return this.seq - this.cursor;
  }
  oldestUnsentAgeMs(): number {
    return 0;
  }
}

function smoke(i: number, deviceId = `SMK-${String(i).padStart(4, '0')}`): Reading {
  return {
    deviceId,
    model: 'smoke-json',
    kind: 'smoke',
    ts: 1_733_300_000_000 + i,
    receivedAt: 1_733_300_000_000 + i,
    metrics: { battery_pct: 85, rssi_dbm: -71 },
    state: { smoke: false },
    events: [],
    place: { grid: GRID, building: '7', room: '地下一层 3,号' },
  };
}

async function waitFor(what: string, cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function writeError(p: Promise<void>): Promise<SinkWriteError> {
  const err: unknown = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof SinkWriteError)) throw new Error(`expected a SinkWriteError, got ${String(err)}`);
  return err;
}

const double = new V2Double();
const sinkOptions = (): InfluxDb2SinkOptions => ({ url: double.url, org: 'city 北京', bucket: 'gridedge/raw', token: TOKEN, timeoutMs: 2000, logger });

beforeAll(() => double.start());
afterAll(() => double.stop());
afterEach(() => {
  double.received.length = 0;
  double.answer = () => ({ status: 204 });
});

describe('influxdb2 sink: what the real client sends', () => {
  it('POSTs the lines to /api/v2/write with org, bucket, precision=ms and the token', async () => {
    const sink = createInfluxDb2Sink(sinkOptions());
    const lines = [1, 2, 3].map((i) => readingToLine(smoke(i)) as string);
    await sink.write(lines);
    await sink.close();
    expect(double.received).toHaveLength(1);
    const req = double.received[0] as Received;
    expect(req.method).toBe('POST');
    expect(req.path).toBe('/api/v2/write');
    expect(req.query).toEqual({ org: 'city 北京', bucket: 'gridedge/raw', precision: 'ms' });
    expect(req.headers.authorization).toBe(`Token ${TOKEN}`);
    expect(req.headers['content-type']).toBe('text/plain; charset=utf-8');
    expect(req.headers['content-encoding']).toBeUndefined();
    expect(req.body).toBe(lines.join('\n'));
    expect(req.body).toContain('room=地下一层\\ 3\\,号 ');
  });

  it('gzips a large batch, and the body is still exactly our lines', async () => {
    const sink = createInfluxDb2Sink(sinkOptions());
    const lines = Array.from({ length: 5000 }, (_, i) => readingToLine(smoke(i)) as string);
    await sink.write(lines);
    await sink.close();
    expect(double.received).toHaveLength(1);
    const req = double.received[0] as Received;
    expect(req.headers['content-encoding']).toBe('gzip');
    expect(req.rawBytes).toBeLessThan(Buffer.byteLength(req.body));
    expect(req.body.split('\n')).toEqual(lines);
  });

  it('sends once per write: no retry, no timer flush, no batching of its own', async () => {
    double.answer = () => ({ status: 503, body: { code: 'unavailable', message: 'service unavailable' } });
    const sink = createInfluxDb2Sink(sinkOptions());
    const err = await writeError(sink.write([readingToLine(smoke(1)) as string]));
    expect(err).toMatchObject({ kind: 'unavailable', status: 503 });
    await new Promise((r) => setTimeout(r, 1500));
    expect(double.received).toHaveLength(1);
    double.answer = () => ({ status: 204 });
    await sink.write([readingToLine(smoke(2)) as string]);
    await new Promise((r) => setTimeout(r, 200));
    // The second request carries only the second line: nothing of the failed one was kept.
    expect(double.received.map((r) => r.body.split('\n').length)).toEqual([1, 1]);
    expect(double.received[1]?.body).toContain('device_id=SMK-0002');
    await sink.close();
  });
});

describe('influxdb2 sink: answers → kinds', () => {
  it.each([
    [400, { code: 'invalid', message: 'unable to parse \'smoke f=\': missing field value' }, 'rejected', "HTTP 400: unable to parse 'smoke f=': missing field value"],
    [401, { code: 'unauthorized', message: 'unauthorized access' }, 'config', 'HTTP 401: unauthorized access'],
    [404, { code: 'not found', message: 'bucket "gridedge/raw" not found' }, 'config', 'HTTP 404: bucket "gridedge/raw" not found'],
    [413, { code: 'request too large', message: 'unable to read data: points batch is too large' }, 'rejected', 'HTTP 413: unable to read data: points batch is too large'],
    [422, { code: 'unprocessable entity', message: 'failure writing points to database: partial write: points beyond retention policy dropped=1' }, 'rejected', 'HTTP 422: failure writing points to database: partial write: points beyond retention policy dropped=1'],
    [500, { code: 'internal error', message: 'unexpected error writing points to database: timeout' }, 'unavailable', 'HTTP 500: unexpected error writing points to database: timeout'],
    [503, { code: 'unavailable', message: 'service unavailable' }, 'unavailable', 'HTTP 503: service unavailable'],
  ] as const)('HTTP %i → %s', async (status, body, kind, message) => {
    double.answer = () => ({ status, body });
    const sink = createInfluxDb2Sink(sinkOptions());
    const err = await writeError(sink.write([readingToLine(smoke(1)) as string]));
    expect(err).toMatchObject({ kind, status, message });
    await sink.close();
  });

  it('a 5000-line batch that fails rejects too (the client swallows errors of flushes it starts itself)', async () => {
    double.answer = () => ({ status: 503, body: { code: 'unavailable', message: 'service unavailable' } });
    const sink = createInfluxDb2Sink(sinkOptions());
    const lines = Array.from({ length: 5000 }, (_, i) => readingToLine(smoke(i)) as string);
    const err = await writeError(sink.write(lines));
    expect(err).toMatchObject({ kind: 'unavailable', status: 503 });
    expect(double.received).toHaveLength(1);
    await sink.close();
  });

  it('reads Retry-After as seconds', async () => {
    double.answer = () => ({ status: 429, body: { code: 'too many requests', message: 'slow down' }, headers: { 'retry-after': '7' } });
    const sink = createInfluxDb2Sink(sinkOptions());
    const err = await writeError(sink.write([readingToLine(smoke(1)) as string]));
    expect(err).toMatchObject({ kind: 'unavailable', status: 429, retryAfterMs: 7000 });
    await sink.close();
  });

  it('a refused connection is unavailable', async () => {
    const sink = createInfluxDb2Sink({ ...sinkOptions(), url: `http://127.0.0.1:${await freePort()}` });
    const err = await writeError(sink.write([readingToLine(smoke(1)) as string]));
    expect(isSinkWriteError(err, 'unavailable')).toBe(true);
    expect(err.message).toMatch(/ECONNREFUSED/);
    await sink.close();
  });

  it('a server that does not answer in time is unavailable', async () => {
    const silent = createServer(() => undefined);
    const port = await freePort();
    await new Promise<void>((resolve) => silent.listen(port, '127.0.0.1', resolve));
    try {
      const sink = createInfluxDb2Sink({ ...sinkOptions(), url: `http://127.0.0.1:${port}`, timeoutMs: 300 });
      const err = await writeError(sink.write([readingToLine(smoke(1)) as string]));
      expect(err).toMatchObject({ kind: 'unavailable', message: 'Request timed out' });
      await sink.close();
    } finally {
      silent.closeAllConnections();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
  });
});

describe('influxdb2 sink driven by the runner through the real client', () => {
  function runnerRig() {
    const source = new MemorySource();
    const sink = createInfluxDb2Sink(sinkOptions());
    const deadLetters: SinkDeadLetter[] = [];
    const runner = createSinkRunner({
      sink,
      source,
      logger,
      flushIntervalMs: 20,
      backoff: { initialMs: 50, maxMs: 200 },
      onDeadLetter: (d) => {
        deadLetters.push(d);
      },
    });
    return { source, sink, runner, deadLetters };
  }

  it('503, 503, then 204: the same batch is retried and acked once', async () => {
    double.answer = (_r, n) => (n <= 2 ? { status: 503, body: { code: 'unavailable', message: 'service unavailable' } } : { status: 204 });
    const { source, sink, runner } = runnerRig();
    source.append([1, 2, 3, 4].map((i) => smoke(i)));
    runner.start();
    await waitFor('delivery', () => source.depth() === 0);
    await runner.stop();
    await sink.close();
    expect(double.received).toHaveLength(3);
    expect(new Set(double.received.map((r) => r.body)).size).toBe(1);
    expect(source.acks).toEqual([4]);
    expect(runner.health()).toMatchObject({ ok: true, retries: 2, pointsWritten: 4, lastError: { kind: 'unavailable', message: 'HTTP 503: service unavailable' } });
  });

  it('400 for a batch with a bad point: bisected, the point dead-lettered, the rest written', async () => {
    // This double is stricter than InfluxDB (it keeps nothing of a rejected body), which the
    // bisection handles the same way: every good point is written by some half.
    const written = new Set<string>();
    double.answer = (req) => {
      if (req.body.includes('device_id=BAD')) return { status: 400, body: { code: 'invalid', message: 'partial write: field type conflict: input field "battery_pct" on measurement "smoke" is type float, already exists as type string dropped=1' } };
      for (const line of req.body.split('\n')) written.add(line);
      return { status: 204 };
    };
    const { source, sink, runner, deadLetters } = runnerRig();
    source.append(Array.from({ length: 1000 }, (_, i) => smoke(i + 1, i === 600 ? 'BAD-0601' : undefined)));
    runner.start();
    await waitFor('delivery', () => source.depth() === 0);
    await runner.stop();
    await sink.close();
    expect(deadLetters.map((d) => [d.seq, d.status, d.deviceId])).toEqual([[601, 400, 'BAD-0601']]);
    expect(deadLetters[0]?.message).toMatch(/^HTTP 400: partial write: field type conflict/);
    expect(written.size).toBe(999);
    expect(source.cursor).toBe(1000);
    expect(runner.health()).toMatchObject({ ok: true, deadLettered: 1, pointsWritten: 999, retries: 0 });
  });

  it('401 is a config error: reported in health, never acked', async () => {
    double.answer = () => ({ status: 401, body: { code: 'unauthorized', message: 'unauthorized access' } });
    const { source, sink, runner } = runnerRig();
    source.append([smoke(1)]);
    runner.start();
    await waitFor('a failed write', () => runner.health().lastError !== null);
    expect(runner.health()).toMatchObject({ ok: false, state: 'backoff', lastError: { kind: 'config', message: 'HTTP 401: unauthorized access' } });
    await new Promise((r) => setTimeout(r, 300));
    expect(source.acks).toEqual([]);
    await runner.stop();
    await sink.close();
  });
});
