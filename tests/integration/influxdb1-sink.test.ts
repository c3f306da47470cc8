import { createServer } from 'node:http';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Reading } from '../../devices/reading.js';
import { createInfluxDb1Sink } from '../../ingest/sinks/influxdb1.js';
import { createSinkRunner, type SinkDeadLetter, type SinkRunner, type SinkSource, type SinkSourceEntry } from '../../ingest/sinks/runner.js';
import { isSinkWriteError, type Sink } from '../../ingest/sinks/sink.js';
import { startInfluxd, type Influxd } from '../helpers/influxd.js';
import { freePort } from '../helpers/ports.js';

// SPEC §5 influxdb1 sink against a real InfluxDB 1.x (Debian's influxd 1.6.7): schema and types as
// the server stores them, an outage with a restart, a field-type conflict, a missing database.

const logger = pino({ level: 'silent' });
const GRID = '110101013001002';
/** Timestamps near now, so that every point of a test lands in one shard (field types are per shard). */
const T0 = Math.floor(Date.now() / 1000) * 1000 - 60 * 60 * 1000;

/** An in-memory outbox on the real clock. */
class MemorySource implements SinkSource {
  private readonly entries: { seq: number; reading: Reading; committedAt: number }[] = [];
  private seq = 0;
  cursor = 0;

  append(readings: readonly Reading[]): void {
    for (const reading of readings) this.entries.push({ seq: ++this.seq, reading, committedAt: Date.now() });
  }
  get committed(): number {
    return this.seq;
  }
  read(limit: number, after = this.cursor): readonly SinkSourceEntry[] {
    const out: SinkSourceEntry[] = [];
    for (const e of this.entries) {
      if (e.seq <= after) continue;
      out.push({ seq: e.seq, reading: e.reading });
      if (out.length >= limit) break;
    }
    return out;
  }
  ack(seq: number): void {
    if (seq <= this.cursor) throw new Error(`ack ${seq} does not move the cursor (${this.cursor})`);
    this.cursor = seq;
  }
  depth(): number {
    return this.seq - this.cursor;
  }
  oldestUnsentAgeMs(): number {
    const oldest = this.entries.find((e) => e.seq > this.cursor);
    return oldest === undefined ? 0 : Date.now() - oldest.committedAt;
  }
}

async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

function smoke(i: number, room = 'B1-3', extra: Partial<Reading> = {}): Reading {
  return {
    deviceId: `SMK-${String(i % 50).padStart(4, '0')}`,
    model: 'smoke-json',
    kind: 'smoke',
    ts: T0 + i,
    receivedAt: T0 + i,
    metrics: { battery_pct: 85, rssi_dbm: -71 },
    state: { smoke: false, tamper: false, fault: false, battery_low: false },
    events: ['heartbeat'],
    place: { grid: GRID, building: '7', room },
    ...extra,
  };
}

interface Rig {
  source: MemorySource;
  sink: Sink;
  runner: SinkRunner;
  deadLetters: SinkDeadLetter[];
  stop(): Promise<void>;
}

let influxd: Influxd;

function rig(database: string, sinkOptions: { createDatabase?: boolean; retentionPolicy?: string } = {}): Rig {
  const source = new MemorySource();
  const sink = createInfluxDb1Sink({ url: influxd.url, database, timeoutMs: 2000, logger, ...sinkOptions });
  const deadLetters: SinkDeadLetter[] = [];
  const runner = createSinkRunner({
    sink,
    source,
    logger,
    flushIntervalMs: 50,
    backoff: { initialMs: 100, maxMs: 1000 },
    onDeadLetter: (d) => {
      deadLetters.push(d);
    },
  });
  runner.start();
  return {
    source,
    sink,
    runner,
    deadLetters,
    async stop() {
      await runner.stop();
      await sink.close();
    },
  };
}

async function rows(q: string, db: string): Promise<unknown[][]> {
  const [result] = await influxd.query(q, db);
  return result?.series?.flatMap((s) => s.values) ?? [];
}

async function count(db: string, q: string): Promise<number> {
  const values = await rows(q, db);
  return Number(values[0]?.[1] ?? 0);
}

beforeAll(async () => {
  influxd = await startInfluxd();
});

afterAll(async () => {
  await influxd?.dispose();
});

describe('influxdb1 sink against influxd 1.6.7', () => {
  it('creates the database and writes each kind with the right measurement, tags, fields and types', async () => {
    const db = 'gridedge_schema';
    expect(JSON.stringify(await influxd.query('SHOW DATABASES'))).not.toContain(db);
    const r = rig(db);
    const rooms = ['地下一层 3,号', 'room=1 "A"', 'B1\\3', 'tail\\', 'line\nbreak'];
    r.source.append([
      smoke(1, rooms[0], { events: ['fire_alarm'], state: { smoke: true, tamper: false, fault: false, battery_low: false } }),
      ...rooms.slice(1).map((room, i) => smoke(2 + i, room)),
      {
        deviceId: 'ELC-0001',
        model: 'elec-ers1',
        kind: 'electrical',
        ts: T0 + 10,
        receivedAt: T0 + 10,
        metrics: { voltage_v: 221.3, current_a: 4, power_w: 912, residual_ma: 12, t1_c: 31.5, arc_count: 0 },
        state: { short_circuit: true, overheat: false },
        events: ['short_circuit'],
        place: { grid: GRID, building: '7', room: 'B1-3' },
      },
      {
        deviceId: 'PGR-0042',
        model: 'pager-json',
        kind: 'pager',
        ts: T0 + 11,
        receivedAt: T0 + 11,
        metrics: { battery_pct: 64 },
        state: { battery_low: false },
        events: ['service_call'],
        service: 'medicine',
        place: { grid: GRID, building: '', room: '' },
      },
    ]);
    await waitFor('delivery', () => r.source.depth() === 0);
    await r.stop();
    expect(r.deadLetters).toEqual([]);
    expect(JSON.stringify(await influxd.query('SHOW DATABASES'))).toContain(db);

    const fieldKeys = async (m: string): Promise<Record<string, unknown>> => Object.fromEntries((await rows(`SHOW FIELD KEYS FROM "${m}"`, db)).map((row) => [String(row[0]), row[1]]));
    expect(await fieldKeys('smoke')).toEqual({
      battery_pct: 'float',
      rssi_dbm: 'float',
      smoke: 'boolean',
      tamper: 'boolean',
      fault: 'boolean',
      battery_low: 'boolean',
      events: 'string',
    });
    expect(await fieldKeys('electrical')).toEqual({
      voltage_v: 'float',
      current_a: 'float',
      power_w: 'float',
      residual_ma: 'float',
      t1_c: 'float',
      arc_count: 'float',
      short_circuit: 'boolean',
      overheat: 'boolean',
      events: 'string',
    });
    expect(await fieldKeys('pager')).toEqual({ battery_pct: 'float', battery_low: 'boolean', events: 'string', service: 'string' });
    expect((await rows('SHOW TAG KEYS FROM "smoke"', db)).map(([k]) => k)).toEqual(['building', 'device_id', 'grid', 'model', 'room']);
    // Empty building and room are left out, not written as empty tags.
    expect((await rows('SHOW TAG KEYS FROM "pager"', db)).map(([k]) => k)).toEqual(['device_id', 'grid', 'model']);

    const roomValues = (await rows('SHOW TAG VALUES FROM "smoke" WITH KEY = "room"', db)).map(([, v]) => v);
    // What line protocol cannot carry in a tag (an unescapable backslash, a line break) is replaced, one character for one.
    expect(roomValues.sort()).toEqual(['B1\\3', 'line break', 'room=1 "A"', 'tail/', '地下一层 3,号'].sort());

    const [alarm] = await rows(`SELECT * FROM "smoke" WHERE "room" = '地下一层 3,号'`, db);
    const [head] = (await influxd.query(`SELECT * FROM "smoke" WHERE "room" = '地下一层 3,号'`, db))[0]?.series ?? [];
    const row = Object.fromEntries((head?.columns ?? []).map((c, i) => [c, alarm?.[i]]));
    expect(row).toMatchObject({
      battery_pct: 85,
      rssi_dbm: -71,
      smoke: true,
      events: 'fire_alarm',
      device_id: 'SMK-0001',
      grid: GRID,
      building: '7',
      model: 'smoke-json',
      time: new Date(T0 + 1).toISOString(),
    });
    const pager = await rows('SELECT "service", "events" FROM "pager"', db);
    expect(pager).toEqual([[new Date(T0 + 11).toISOString(), 'medicine', 'service_call']]);
  });

  it('rides out influxd stopped mid-stream for ~10 s: every reading arrives exactly once', { timeout: 90_000 }, async () => {
    const db = 'gridedge_outage';
    const r = rig(db);
    let produced = 0;
    const produce = (n: number): void => {
      r.source.append(Array.from({ length: n }, () => smoke(++produced)));
      r.runner.notify();
    };
    const producer = setInterval(() => produce(25), 20);
    try {
      await waitFor('first deliveries', async () => (await count(db, 'SELECT count("battery_pct") FROM "smoke"').catch(() => 0)) > 200);

      await influxd.stop();
      await new Promise((res) => setTimeout(res, 1000));
      // A write answered just before the server went may still have been acked; from now on nothing is.
      const cursorWhileDown = r.source.cursor;
      await new Promise((res) => setTimeout(res, 9000));
      const during = r.runner.health();
      expect(during.ok).toBe(false);
      expect(during.lastError?.kind).toBe('unavailable');
      expect(during.lastError?.message).toMatch(/ECONNREFUSED|socket hang up|ECONNRESET/);
      expect(r.source.cursor).toBe(cursorWhileDown);
      expect(r.source.depth()).toBeGreaterThan(1000);
      expect(during.retries).toBeGreaterThan(3);

      await influxd.restart();
      await new Promise((res) => setTimeout(res, 500));
    } finally {
      clearInterval(producer);
    }
    await waitFor('the backlog to drain', () => r.source.depth() === 0, 30_000);
    await r.stop();
    expect(await count(db, 'SELECT count("battery_pct") FROM "smoke"')).toBe(produced);
    expect(await count(db, 'SELECT count(*) FROM "smoke"')).toBe(produced);
    const h = r.runner.health();
    expect(h).toMatchObject({ ok: true, deadLettered: 0, pointsWritten: produced });
  });

  it('dead-letters the point of a field-type conflict and the rest of the batch flows', async () => {
    const db = 'gridedge_conflict';
    await influxd.query(`CREATE DATABASE "${db}"`);
    // `service` exists as a float in this shard: the pager's string service can never go in.
    await influxd.write(db, `pager,device_id=LEGACY,grid=${GRID} service=1 ${T0}`);
    const r = rig(db);
    const batch: Reading[] = Array.from({ length: 300 }, (_, i) => smoke(1000 + i));
    batch.splice(137, 0, {
      deviceId: 'PGR-0042',
      model: 'pager-json',
      kind: 'pager',
      ts: T0 + 5,
      receivedAt: T0 + 5,
      metrics: { battery_pct: 64 },
      state: {},
      events: ['service_call'],
      service: 'meal',
      place: { grid: GRID, building: '5', room: '302' },
    });
    r.source.append(batch);
    r.runner.notify();
    await waitFor('delivery', () => r.source.depth() === 0);
    r.source.append(Array.from({ length: 50 }, (_, i) => smoke(2000 + i)));
    r.runner.notify();
    await waitFor('delivery', () => r.source.depth() === 0);
    await r.stop();

    expect(r.deadLetters).toHaveLength(1);
    expect(r.deadLetters[0]).toMatchObject({ seq: 138, status: 400, code: 'SINK_ERR_REJECTED' });
    expect(r.deadLetters[0]?.deviceId).toBe('PGR-0042');
    expect(r.deadLetters[0]?.message).toMatch(/field type conflict: input field "service" on measurement "pager" is type string, already exists as type float/);
    expect(await count(db, 'SELECT count("battery_pct") FROM "smoke"')).toBe(350);
    expect(await count(db, 'SELECT count("battery_pct") FROM "pager"')).toBe(0);
    expect(r.runner.health()).toMatchObject({ deadLettered: 1, pointsWritten: 350, ok: true });
  });

  it('creates the database again when it is dropped behind its back', async () => {
    const db = 'gridedge_dropped';
    const r = rig(db);
    r.source.append([smoke(1)]);
    await waitFor('delivery', () => r.source.depth() === 0);
    await influxd.query(`DROP DATABASE "${db}"`);
    r.source.append([smoke(2), smoke(3)]);
    r.runner.notify();
    await waitFor('delivery', () => r.source.depth() === 0);
    await r.stop();
    expect(await count(db, 'SELECT count("battery_pct") FROM "smoke"')).toBe(2);
    expect(r.runner.health()).toMatchObject({ ok: true, retries: 0, deadLettered: 0 });
  });

  it('with createDatabase: false, a missing database is a config error: reported, retried, never acked', async () => {
    const db = 'gridedge_missing';
    const r = rig(db, { createDatabase: false });
    r.source.append([smoke(1)]);
    await waitFor('a failed write', () => r.runner.health().lastError !== null);
    expect(r.runner.health()).toMatchObject({ ok: false, state: 'backoff', lastError: { kind: 'config', message: 'HTTP 404: database not found: "gridedge_missing"' } });
    expect(r.source.cursor).toBe(0);
    // The operator creates it: the next retry goes through.
    await influxd.query(`CREATE DATABASE "${db}"`);
    await waitFor('delivery', () => r.source.depth() === 0, 5000);
    await r.stop();
    expect(await count(db, 'SELECT count("battery_pct") FROM "smoke"')).toBe(1);
  });

  it('an unknown retention policy is a config error, not an outage', async () => {
    const db = 'gridedge_rp';
    const sink = createInfluxDb1Sink({ url: influxd.url, database: db, retentionPolicy: 'nope', logger });
    try {
      const err: unknown = await sink.write([`smoke,grid=${GRID} battery_pct=1 ${T0}`]).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isSinkWriteError(err, 'config')).toBe(true);
      expect((err as Error).message).toBe('retention policy not found: nope on database gridedge_rp');
    } finally {
      await sink.close();
    }
  });

  it('does not retry on its own, nor black-list the host after a failure (the runner is the only retry loop)', async () => {
    // Left at its defaults the package's pool retries twice and then answers "No host available"
    // for 300 ms … 10 s without trying. An HTTP double that says 503 once, then 204.
    let requests = 0;
    const double = createServer((req, res) => {
      requests++;
      req.resume();
      req.on('end', () => {
        res.writeHead(requests === 1 ? 503 : 204);
        res.end();
      });
    });
    const port = await freePort();
    await new Promise<void>((resolve) => double.listen(port, '127.0.0.1', resolve));
    try {
      const sink = createInfluxDb1Sink({ url: `http://127.0.0.1:${port}`, database: 'x', createDatabase: false, logger });
      const line = `smoke,grid=${GRID} battery_pct=1 ${T0}`;
      const err: unknown = await sink.write([line]).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toMatchObject({ kind: 'unavailable', message: 'Service Unavailable' });
      expect(requests).toBe(1);
      await sink.write([line]);
      expect(requests).toBe(2);
      await sink.close();
    } finally {
      double.closeAllConnections();
      await new Promise<void>((resolve) => double.close(() => resolve()));
    }
  });

  it('a server that does not answer within timeoutMs is unavailable', async () => {
    const silent = createServer(() => undefined);
    const port = await freePort();
    await new Promise<void>((resolve) => silent.listen(port, '127.0.0.1', resolve));
    try {
      const sink = createInfluxDb1Sink({ url: `http://127.0.0.1:${port}`, database: 'x', createDatabase: false, timeoutMs: 300, logger });
      const err: unknown = await sink.write([`smoke,grid=${GRID} battery_pct=1 ${T0}`]).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isSinkWriteError(err, 'unavailable')).toBe(true);
      expect((err as Error).message).toBe('Request timed out');
      await sink.close();
    } finally {
      silent.closeAllConnections();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
  });

  it('a refused connection is unavailable', async () => {
    const sink = createInfluxDb1Sink({ url: `http://127.0.0.1:${await freePort()}`, database: 'x', logger });
    const err: unknown = await sink.write([`smoke,grid=${GRID} battery_pct=1 ${T0}`]).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isSinkWriteError(err, 'unavailable')).toBe(true);
    expect((err as Error).message).toMatch(/ECONNREFUSED/);
    await sink.close();
  });
});
