import { describe, expect, it } from 'vitest';
import type { Reading } from '../../../devices/reading.js';
import { DEFAULT_BACKOFF, backoffDelay } from '../../../ingest/sinks/backoff.js';
import type { SinkClock } from '../../../ingest/sinks/clock.js';
import { createEmbeddedSink } from '../../../ingest/sinks/embedded.js';
import { createSinkRunner, type SinkDeadLetter, type SinkHealth, type SinkRunnerOptions, type SinkSource, type SinkSourceEntry } from '../../../ingest/sinks/runner.js';
import { SinkWriteError, type Sink, type SinkLogger, type SinkWriteErrorKind } from '../../../ingest/sinks/sink.js';

// SPEC §5 delivery: batches of up to 5000 points or 1 s, retry with backoff and jitter while the
// server is down (never ack, never drop), a rejected point isolated and dead-lettered. Time is a
// fake clock: nothing here sleeps.

/** Lets promise chains and the runner's loop settle (each setImmediate drains the microtasks). */
async function settle(rounds = 20): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

class FakeClock implements SinkClock {
  t = 0;
  private nextId = 1;
  private timers: { id: number; at: number; fn: () => void }[] = [];

  now(): number {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.nextId++;
    this.timers.push({ id, at: this.t + Math.max(0, ms), fn });
    return id;
  }
  clearTimeout(handle: unknown): void {
    this.timers = this.timers.filter((t) => t.id !== handle);
  }
  /** Moves time forward, firing due timers in order and letting the runner react to each. */
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    await settle();
    for (;;) {
      const due = this.timers.filter((t) => t.at <= end).sort((a, b) => a.at - b.at || a.id - b.id)[0];
      if (due === undefined) break;
      this.timers = this.timers.filter((t) => t !== due);
      this.t = due.at;
      due.fn();
      await settle();
    }
    this.t = end;
    await settle();
  }
  /** The wall clock steps (NTP): now() jumps, pending timers keep their delays (they are monotonic). */
  step(ms: number): void {
    this.t += ms;
    for (const t of this.timers) t.at += ms;
  }
}

function makeReading(i: number, deviceId = `SMK-${String(i).padStart(5, '0')}`): Reading {
  return {
    deviceId,
    model: 'smoke-json',
    kind: 'smoke',
    ts: 1_733_300_000_000 + i,
    receivedAt: 1_733_300_000_000 + i,
    metrics: { battery_pct: 80 + (i % 20) },
    state: { smoke: false },
    events: [],
    place: { grid: '110101013001002', building: '7', room: 'B1-3' },
  };
}

/** An in-memory outbox with a durable-looking cursor. */
/** What FakeSource keeps: readings, as the store commits them. */
interface ReadingEntry {
  readonly seq: number;
  readonly reading: Reading;
  readonly committedAt: number;
}

class FakeSource implements SinkSource {
  readonly entries: (ReadingEntry)[] = [];
  cursor = 0;
  readonly acks: number[] = [];
  reads = 0;
  /** The `after` of each read ahead of the cursor. */
  readonly readsAhead: number[] = [];
  failReads = 0;
  private seq = 0;

  constructor(private readonly clock: FakeClock) {}

  append(n: number, make: (i: number) => Reading = makeReading): ReadingEntry[] {
    const added = Array.from({ length: n }, () => {
      this.seq++;
      return { seq: this.seq, reading: make(this.seq), committedAt: this.clock.now() };
    });
    this.entries.push(...added);
    return added;
  }
  private pending(after = this.cursor): ReadingEntry[] {
    return this.entries.filter((e) => e.seq > after);
  }
  read(limit: number, after?: number): readonly SinkSourceEntry[] {
    this.reads++;
    if (after !== undefined) this.readsAhead.push(after);
    if (this.failReads > 0) {
      this.failReads--;
      throw new Error('SQLITE_BUSY: database is locked');
    }
    return this.pending(after)
      .slice(0, limit)
      .map(({ seq, reading }) => ({ seq, reading }));
  }
  ack(seq: number): void {
    expect(seq).toBeGreaterThan(this.cursor);
    this.acks.push(seq);
    this.cursor = seq;
  }
  depth(): number {
    return this.pending().length;
  }
  oldestUnsentAgeMs(): number {
    const oldest = this.pending()[0];
    return oldest === undefined ? 0 : this.clock.now() - oldest.committedAt;
  }
}

type Behaviour = (lines: readonly string[], call: number, sink: ScriptedSink) => void | Promise<void>;

/** A sink whose answers are scripted; every call is recorded with the fake time it came at. */
class ScriptedSink implements Sink {
  readonly name = 'fake';
  readonly calls: { at: number; lines: readonly string[] }[] = [];
  /** Lines the "server" holds (a set: re-writing a point overwrites it). */
  readonly stored = new Set<string>();
  closed = false;

  constructor(
    private readonly clock: FakeClock,
    public behaviour: Behaviour = () => undefined,
  ) {}

  async write(lines: readonly string[]): Promise<void> {
    this.calls.push({ at: this.clock.now(), lines: [...lines] });
    await this.behaviour(lines, this.calls.length, this);
    for (const line of lines) this.stored.add(line);
  }
  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }
}

function fail(kind: SinkWriteErrorKind, message: string = kind, status?: number): never {
  throw new SinkWriteError(kind, message, status === undefined ? {} : { status });
}

/** Like InfluxDB's partial write: every good point is kept, the bad ones dropped, and 400 said. */
function partialWrite(isBad: (line: string) => boolean): Behaviour {
  return (lines, _call, sink) => {
    const bad = lines.filter(isBad);
    if (bad.length === 0) return;
    for (const line of lines) if (!isBad(line)) sink.stored.add(line);
    fail('rejected', `partial write: field type conflict: input field "battery_pct" on measurement "smoke" is type string, already exists as type float dropped=${bad.length}`, 400);
  };
}

function recordingLogger(): SinkLogger & { entries: { level: string; obj: object; msg?: string }[] } {
  const entries: { level: string; obj: object; msg?: string }[] = [];
  const at =
    (level: string) =>
    (obj: object, msg?: string): void => {
      entries.push({ level, obj, ...(msg === undefined ? {} : { msg }) });
    };
  return { entries, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

function setup(options: Partial<SinkRunnerOptions> & { behaviour?: Behaviour } = {}) {
  const clock = new FakeClock();
  const source = new FakeSource(clock);
  const sink = new ScriptedSink(clock, options.behaviour);
  const logger = recordingLogger();
  const deadLetters: SinkDeadLetter[] = [];
  const runner = createSinkRunner({
    sink,
    source,
    logger,
    clock,
    random: () => 0.5,
    onDeadLetter: (entry) => {
      deadLetters.push(entry);
    },
    ...options,
  });
  return { clock, source, sink, logger, deadLetters, runner };
}

describe('batching', () => {
  it('sends full batches at once and drains a backlog without waiting for the window', async () => {
    const { clock, source, sink, runner } = setup({ batchSize: 100 });
    runner.start();
    await settle();
    source.append(250);
    runner.notify();
    await clock.advance(0);
    expect(sink.calls.map((c) => [c.at, c.lines.length])).toEqual([
      [0, 100],
      [0, 100],
      // The tail of the same burst has waited as long as the rest: it goes out too.
      [0, 50],
    ]);
    expect(source.acks).toEqual([100, 200, 250]);
    await runner.stop();
  });

  it('reads the next batch of a backlog while the current one is written, and uses it once that one is acked', async () => {
    const { clock, source, sink, runner } = setup({ batchSize: 100 });
    source.append(250);
    runner.start();
    await clock.advance(0);
    // Read ahead after each full batch, from the last seq of the batch on the wire.
    expect(source.readsAhead).toEqual([100, 200]);
    expect(sink.calls.map((c) => c.lines.length)).toEqual([100, 100, 50]);
    expect(source.acks).toEqual([100, 200, 250]);
    await runner.stop();
  });

  it('drops what it read ahead when the write fails, and reads the batch again from the cursor', async () => {
    const { clock, source, sink, runner } = setup({ batchSize: 100 });
    sink.behaviour = (_lines, call) => {
      if (call === 1) fail('unavailable', 'connect ECONNREFUSED');
    };
    source.append(250);
    runner.start();
    await clock.advance(60_000);
    // The first attempt failed: its read-ahead (after 100) is not used; the retry is 1..100 again.
    expect(sink.calls.map((c) => [c.lines.length, c.lines[0]?.includes('SMK-00001') ?? false])).toEqual([
      [100, true],
      [100, true],
      [100, false],
      [50, false],
    ]);
    expect(source.acks).toEqual([100, 200, 250]);
    await runner.stop();
  });

  it('holds a partial batch for flushIntervalMs from the first point, then sends it as one write', async () => {
    const { clock, source, sink, runner } = setup({ batchSize: 100, flushIntervalMs: 1000 });
    runner.start();
    await clock.advance(100);
    source.append(30);
    runner.notify();
    await clock.advance(500);
    source.append(20);
    runner.notify();
    await clock.advance(499);
    expect(sink.calls).toEqual([]);
    await clock.advance(1);
    expect(sink.calls.map((c) => [c.at, c.lines.length])).toEqual([[1100, 50]]);
    expect(source.acks).toEqual([50]);
    await runner.stop();
  });

  it('a wall clock stepped back an hour during the window delays the batch by one window, not an hour', async () => {
    const { clock, source, sink, runner } = setup({ batchSize: 100, flushIntervalMs: 1000 });
    runner.start();
    await clock.advance(100);
    source.append(30);
    runner.notify();
    await clock.advance(500);
    clock.step(-3_600_000);
    await clock.advance(1_500);
    expect(sink.calls.map((c) => c.lines.length)).toEqual([30]);
    await runner.stop();
  });

  it('cuts the window short when the batch fills up', async () => {
    const { clock, source, sink, runner } = setup({ batchSize: 100, flushIntervalMs: 1000 });
    runner.start();
    await settle();
    source.append(60);
    runner.notify();
    await clock.advance(300);
    expect(sink.calls).toEqual([]);
    source.append(60);
    runner.notify();
    await clock.advance(0);
    expect(sink.calls.map((c) => [c.at, c.lines.length])).toEqual([
      [300, 100],
      [300, 20],
    ]);
    await runner.stop();
  });

  it('finds points that were committed without a notify() by polling every flushIntervalMs', async () => {
    const { clock, source, sink, runner } = setup({ batchSize: 100, flushIntervalMs: 1000 });
    runner.start();
    await settle();
    source.append(5);
    await clock.advance(999);
    expect(sink.calls).toEqual([]);
    await clock.advance(1);
    // The oldest point has waited the whole window already: no second window.
    expect(sink.calls.map((c) => [c.at, c.lines.length])).toEqual([[1000, 5]]);
    await runner.stop();
  });

  it('delivers a backlog found at start at once, in batches of batchSize, with the default 5000', async () => {
    const { clock, source, sink, runner } = setup();
    source.append(12_000);
    runner.start();
    await clock.advance(0);
    expect(sink.calls.map((c) => c.lines.length)).toEqual([5000, 5000, 2000]);
    expect(source.cursor).toBe(12_000);
    expect(runner.health()).toMatchObject({ pointsWritten: 12_000, batches: 3, depth: 0, ok: true, lastSuccessAt: 0 });
    await runner.stop();
  });

  it('acks readings that have no field without writing them', async () => {
    const { clock, source, sink, runner } = setup();
    source.append(3, (i) => (i === 2 ? { ...makeReading(i), metrics: {}, state: {} } : makeReading(i)));
    source.append(1, (i) => ({ ...makeReading(i), metrics: {}, state: {} }));
    runner.start();
    await clock.advance(0);
    expect(sink.calls.map((c) => c.lines.length)).toEqual([2]);
    expect(source.cursor).toBe(4);
    expect(runner.health()).toMatchObject({ pointsWritten: 2, skipped: 2 });
    await runner.stop();
  });
});

describe('retry with backoff and jitter', () => {
  it('backoffDelay doubles from initialMs, caps at maxMs, and spreads ±jitter', () => {
    const mid = (): number => 0.5;
    expect([1, 2, 3, 4, 5, 6, 7, 8, 50].map((n) => backoffDelay(n, DEFAULT_BACKOFF, mid))).toEqual([500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
    expect(backoffDelay(1, DEFAULT_BACKOFF, () => 0)).toBe(400);
    expect(backoffDelay(2, DEFAULT_BACKOFF, () => 0.999999)).toBe(1200);
    expect(backoffDelay(9, DEFAULT_BACKOFF, () => 0)).toBe(24000);
    // The ceiling holds with jitter too.
    expect(backoffDelay(9, DEFAULT_BACKOFF, () => 0.999999)).toBe(30000);
    expect(backoffDelay(Number.MAX_SAFE_INTEGER, DEFAULT_BACKOFF, mid)).toBe(30000);
  });

  it('retries the same batch on the exponential schedule while unavailable, never acking, then acks once', async () => {
    const { clock, source, sink, runner } = setup({
      behaviour: (_lines, call) => {
        if (call <= 8) fail('unavailable', 'connect ECONNREFUSED 127.0.0.1:8086');
      },
    });
    source.append(10);
    runner.start();
    await clock.advance(0);
    expect(runner.health()).toMatchObject({ state: 'backoff', ok: false, nextRetryAt: 500, lastError: { kind: 'unavailable', message: 'connect ECONNREFUSED 127.0.0.1:8086', at: 0 } });

    await clock.advance(61_499);
    expect(source.acks).toEqual([]);
    expect(runner.health().depth).toBe(10);
    await clock.advance(30_001);
    expect(sink.calls.map((c) => c.at)).toEqual([0, 500, 1500, 3500, 7500, 15500, 31500, 61500, 91500]);
    for (const call of sink.calls) expect(call.lines).toEqual(sink.calls[0]?.lines);
    expect(source.acks).toEqual([10]);
    expect(runner.health()).toMatchObject({ ok: true, state: 'idle', retries: 8, pointsWritten: 10, batches: 1, lastSuccessAt: 91500, nextRetryAt: null });
    // The last error stays visible after the recovery.
    expect(runner.health().lastError?.kind).toBe('unavailable');
    await runner.stop();
  });

  it('draws the jitter from the injected random source', async () => {
    const randoms = [0, 0.999999, 0.25];
    const { clock, source, sink, runner } = setup({
      random: () => randoms.shift() ?? 0.5,
      behaviour: (_l, call) => {
        if (call <= 3) fail('unavailable');
      },
    });
    source.append(1);
    runner.start();
    await clock.advance(10_000);
    // 500·0.8, 1000·1.2, 2000·0.9
    expect(sink.calls.map((c) => c.at)).toEqual([0, 400, 1600, 3400]);
    await runner.stop();
  });

  it('sends what piled up during the outage with the retried batch, up to batchSize', async () => {
    const { clock, source, sink, runner } = setup({
      batchSize: 100,
      behaviour: (_l, call) => {
        if (call <= 2) fail('unavailable');
      },
    });
    source.append(10);
    runner.start();
    await clock.advance(0);
    source.append(200);
    runner.notify();
    await clock.advance(1500);
    expect(sink.calls.map((c) => c.lines.length)).toEqual([10, 100, 100, 100, 10]);
    expect(source.cursor).toBe(210);
    await runner.stop();
  });

  it('never acks and never drops while the server stays down', async () => {
    const { clock, source, sink, runner, logger } = setup({ behaviour: () => fail('unavailable', 'other side closed') });
    source.append(42);
    runner.start();
    await clock.advance(10 * 60_000);
    expect(source.acks).toEqual([]);
    expect(source.depth()).toBe(42);
    expect(sink.calls.length).toBeGreaterThan(20);
    expect(sink.calls.every((c) => c.lines.length === 42)).toBe(true);
    const h = runner.health();
    expect(h).toMatchObject({ ok: false, state: 'backoff', depth: 42, pointsWritten: 0, deadLettered: 0 });
    expect(h.retries).toBe(sink.calls.length - 1);
    // One warning for the outage, not one per retry.
    expect(logger.entries.filter((e) => e.level === 'warn')).toHaveLength(1);
    // stop() does not wait for the backoff to run out.
    await runner.stop();
    expect(runner.health().state).toBe('stopped');
  });

  it('retries a config error slowly (at the ceiling) and reports it', async () => {
    const { clock, source, sink, runner } = setup({
      behaviour: (_l, call) => {
        if (call <= 2) fail('config', 'HTTP 401: authorization failed', 401);
      },
    });
    source.append(3);
    runner.start();
    await clock.advance(0);
    expect(runner.health()).toMatchObject({ ok: false, lastError: { kind: 'config', message: 'HTTP 401: authorization failed' }, nextRetryAt: 30_000 });
    await clock.advance(60_000);
    expect(sink.calls.map((c) => c.at)).toEqual([0, 30_000, 60_000]);
    expect(source.cursor).toBe(3);
    await runner.stop();
  });

  it('waits at least as long as the server asks (Retry-After), within maxMs', async () => {
    const { clock, source, sink, runner } = setup({
      behaviour: (_l, call) => {
        if (call === 1) throw new SinkWriteError('unavailable', 'HTTP 429: too many requests', { status: 429, retryAfterMs: 7000 });
      },
    });
    source.append(1);
    runner.start();
    await clock.advance(10_000);
    expect(sink.calls.map((c) => c.at)).toEqual([0, 7000]);
    await runner.stop();
  });

  it('treats anything a sink throws as unavailable (retry, never drop)', async () => {
    const { clock, source, runner } = setup({
      behaviour: (_l, call) => {
        if (call === 1) throw new TypeError('a bug in a sink');
      },
    });
    source.append(2);
    runner.start();
    await clock.advance(600);
    expect(source.cursor).toBe(2);
    expect(runner.health().lastError).toMatchObject({ kind: 'unavailable', message: 'a bug in a sink' });
    await runner.stop();
  });

  it('backs off when the source fails, and goes on when it recovers', async () => {
    const { clock, source, sink, runner } = setup();
    source.append(4);
    source.failReads = 2;
    runner.start();
    await clock.advance(0);
    expect(runner.health().lastError).toMatchObject({ kind: 'source', message: 'SQLITE_BUSY: database is locked' });
    await clock.advance(1500);
    expect(sink.calls.map((c) => c.at)).toEqual([1500]);
    expect(source.cursor).toBe(4);
    await runner.stop();
  });

  it('does not spin on a source whose depth() and read() disagree', async () => {
    const ctx = setup();
    ctx.source.depth = () => 1;
    ctx.runner.start();
    await ctx.clock.advance(10_000);
    expect(ctx.source.reads).toBeLessThanOrEqual(11);
    expect(ctx.sink.calls).toEqual([]);
    await ctx.runner.stop();
  });

  it('gives up on a write that never settles after writeTimeoutMs and retries it', async () => {
    const { clock, source, sink, runner } = setup({
      writeTimeoutMs: 5000,
      behaviour: (_l, call) => (call === 1 ? new Promise<void>(() => undefined) : undefined),
    });
    source.append(1);
    runner.start();
    await clock.advance(5000);
    expect(runner.health().lastError?.message).toMatch(/did not settle within 5000 ms/);
    await clock.advance(500);
    expect(sink.calls.map((c) => c.at)).toEqual([0, 5500]);
    expect(source.cursor).toBe(1);
    await runner.stop();
  });
});

describe('isolating rejected points (HTTP 400)', () => {
  it('one bad point in 5000: exactly one dead letter, the other 4999 written and everything acked', async () => {
    const isBad = (line: string): boolean => line.includes('device_id=BAD-3137,');
    const ctx = setup({ behaviour: partialWrite(isBad) });
    const { clock, source, sink, runner, deadLetters } = ctx;
    source.append(5000, (i) => makeReading(i, i === 3137 ? 'BAD-3137' : undefined));
    runner.start();
    await clock.advance(0);

    expect(deadLetters).toHaveLength(1);
    expect(deadLetters[0]).toMatchObject({ sink: 'fake', code: 'SINK_ERR_REJECTED', seq: 3137, status: 400, at: 0 });
    expect(deadLetters[0]?.deviceId).toBe('BAD-3137');
    expect(deadLetters[0]?.line).toMatch(/^smoke,building=7,device_id=BAD-3137,/);
    expect(deadLetters[0]?.message).toMatch(/field type conflict/);
    expect(source.cursor).toBe(5000);
    expect(source.depth()).toBe(0);
    expect(sink.stored.size).toBe(4999);
    expect([...sink.stored].some(isBad)).toBe(false);
    // Bisection: the batch, then two halves per level down to one point (log2 5000 ≈ 13).
    expect(sink.calls.length).toBeLessThanOrEqual(1 + 2 * 13);
    // No backoff: a 400 is an answer, not an outage.
    expect(sink.calls.every((c) => c.at === 0)).toBe(true);
    // Acks only move forward, and the last one is the batch's end.
    expect(source.acks.at(-1)).toBe(5000);
    expect(runner.health()).toMatchObject({ ok: true, deadLettered: 1, pointsWritten: 4999, batches: 1, retries: 0, lastError: { kind: 'rejected' } });
    await runner.stop();
  });

  it('isolates several bad points and keeps going with the next batch', async () => {
    const bad = new Set([1, 2, 500, 999]);
    const ctx = setup({ batchSize: 1000, behaviour: partialWrite((l) => l.includes('device_id=BAD')) });
    ctx.source.append(1500, (i) => makeReading(i, bad.has(i) ? `BAD-${i}` : undefined));
    ctx.runner.start();
    await ctx.clock.advance(0);
    expect(ctx.deadLetters.map((d) => d.seq)).toEqual([1, 2, 500, 999]);
    expect(ctx.source.cursor).toBe(1500);
    expect(ctx.sink.stored.size).toBe(1496);
    expect(ctx.runner.health()).toMatchObject({ deadLettered: 4, pointsWritten: 1496, batches: 2 });
    await ctx.runner.stop();
  });

  it('dead-letters a single rejected point without writing it again', async () => {
    const ctx = setup({ behaviour: () => fail('rejected', 'unable to parse', 400) });
    ctx.source.append(1);
    ctx.runner.start();
    await ctx.clock.advance(0);
    expect(ctx.sink.calls).toHaveLength(1);
    expect(ctx.deadLetters.map((d) => d.seq)).toEqual([1]);
    expect(ctx.source.cursor).toBe(1);
    await ctx.runner.stop();
  });

  it('waits out an outage in the middle of a bisection without losing a range', async () => {
    const partial = partialWrite((l) => l.includes('device_id=BAD'));
    const ctx = setup({
      behaviour: (lines, call, sink) => {
        if (call === 3 || call === 4) fail('unavailable', 'socket hang up');
        return partial(lines, call, sink);
      },
    });
    ctx.source.append(64, (i) => makeReading(i, i === 40 ? 'BAD-40' : undefined));
    ctx.runner.start();
    await ctx.clock.advance(10_000);
    expect(ctx.deadLetters.map((d) => d.seq)).toEqual([40]);
    expect(ctx.sink.stored.size).toBe(63);
    expect(ctx.source.cursor).toBe(64);
    // The range that failed was written again, unchanged, after the backoff.
    expect(ctx.sink.calls[3]?.lines).toEqual(ctx.sink.calls[2]?.lines);
    expect(ctx.sink.calls[4]?.lines).toEqual(ctx.sink.calls[2]?.lines);
    expect(ctx.runner.health()).toMatchObject({ retries: 2, deadLettered: 1, pointsWritten: 63 });
    await ctx.runner.stop();
  });

  it('a failing dead-letter handler does not block the outbox', async () => {
    const ctx = setup({
      behaviour: () => fail('rejected', 'bad', 400),
      onDeadLetter: () => {
        throw new Error('dead-letter table is full');
      },
    });
    ctx.source.append(2);
    ctx.runner.start();
    await ctx.clock.advance(0);
    expect(ctx.source.cursor).toBe(2);
    expect(ctx.logger.entries.filter((e) => e.level === 'error').map((e) => e.msg)).toEqual(['sink fake: dead-letter handler failed', 'sink fake: dead-letter handler failed']);
    expect(ctx.runner.health().deadLettered).toBe(2);
    await ctx.runner.stop();
  });
});

describe('lifecycle and health', () => {
  it('stop() waits for the write in flight, and acks it when it succeeds', async () => {
    let release!: () => void;
    const ctx = setup({ behaviour: () => new Promise<void>((resolve) => (release = resolve)) });
    ctx.source.append(3);
    ctx.runner.start();
    await ctx.clock.advance(0);
    expect(ctx.runner.health().state).toBe('writing');
    let stopped = false;
    const stopping = ctx.runner.stop().then(() => (stopped = true));
    await ctx.clock.advance(1000);
    expect(stopped).toBe(false);
    release();
    await stopping;
    expect(ctx.source.cursor).toBe(3);
    expect(ctx.runner.health().state).toBe('stopped');
    expect(ctx.sink.closed).toBe(false);
  });

  it('stop() gives up after stopTimeoutMs; the late answer is not acked (re-sent after restart)', async () => {
    let release!: () => void;
    const ctx = setup({ stopTimeoutMs: 2000, behaviour: (_l, call) => (call === 1 ? new Promise<void>((resolve) => (release = resolve)) : undefined) });
    ctx.source.append(3);
    ctx.runner.start();
    await ctx.clock.advance(0);
    const stopping = ctx.runner.stop();
    await ctx.clock.advance(2000);
    await stopping;
    release();
    await settle();
    expect(ctx.source.acks).toEqual([]);
    ctx.runner.start();
    await ctx.clock.advance(0);
    expect(ctx.sink.calls).toHaveLength(2);
    expect(ctx.source.cursor).toBe(3);
    await ctx.runner.stop();
  });

  it('notify() before start() and after stop() does nothing; start() twice runs one loop', async () => {
    const ctx = setup();
    ctx.runner.notify();
    ctx.runner.start();
    ctx.runner.start();
    ctx.source.append(1);
    ctx.runner.notify();
    await ctx.clock.advance(1000);
    expect(ctx.sink.calls).toHaveLength(1);
    await ctx.runner.stop();
    await ctx.runner.stop();
    ctx.source.append(1);
    ctx.runner.notify();
    await ctx.clock.advance(5000);
    expect(ctx.sink.calls).toHaveLength(1);
  });

  it('counters never go down', async () => {
    const partial = partialWrite((l) => l.includes('device_id=BAD'));
    const ctx = setup({
      batchSize: 50,
      behaviour: (lines, call, sink) => {
        if (call % 7 === 0) fail('unavailable');
        return partial(lines, call, sink);
      },
    });
    const keys = ['pointsWritten', 'batches', 'retries', 'deadLettered', 'skipped'] as const;
    const samples: SinkHealth[] = [];
    ctx.runner.start();
    for (let step = 0; step < 40; step++) {
      ctx.source.append(17, (i) => makeReading(i, i % 23 === 0 ? `BAD-${i}` : undefined));
      ctx.runner.notify();
      await ctx.clock.advance(700);
      samples.push(ctx.runner.health());
    }
    await ctx.clock.advance(60_000);
    samples.push(ctx.runner.health());
    for (let i = 1; i < samples.length; i++) {
      for (const k of keys) expect((samples[i] as SinkHealth)[k]).toBeGreaterThanOrEqual((samples[i - 1] as SinkHealth)[k]);
    }
    const last = samples.at(-1) as SinkHealth;
    expect(last.pointsWritten + last.deadLettered).toBe(680);
    expect(last.deadLettered).toBe(Math.floor(680 / 23));
    expect(ctx.source.cursor).toBe(680);
    await ctx.runner.stop();
  });

  it('validates its options eagerly, naming the bad one', () => {
    const clock = new FakeClock();
    const base = { sink: createEmbeddedSink(), source: new FakeSource(clock), logger: recordingLogger(), onDeadLetter: () => undefined };
    expect(() => createSinkRunner({ ...base, batchSize: 0 })).toThrow(/batchSize must be a positive integer/);
    expect(() => createSinkRunner({ ...base, flushIntervalMs: -1 })).toThrow(/flushIntervalMs/);
    expect(() => createSinkRunner({ ...base, backoff: { jitter: 2 } })).toThrow(/backoff.jitter must be within \[0, 1\]/);
    expect(() => createSinkRunner({ ...base, backoff: { initialMs: 1000, maxMs: 10 } })).toThrow(/backoff.maxMs/);
  });

  it('the embedded sink acknowledges everything, so its cursor keeps up', async () => {
    const clock = new FakeClock();
    const source = new FakeSource(clock);
    const runner = createSinkRunner({ sink: createEmbeddedSink(), source, logger: recordingLogger(), clock, onDeadLetter: () => undefined });
    source.append(7000);
    runner.start();
    await clock.advance(0);
    expect(source.cursor).toBe(7000);
    expect(runner.health()).toMatchObject({ name: 'embedded', pointsWritten: 7000, batches: 2, ok: true });
    await runner.stop();
  });
});
