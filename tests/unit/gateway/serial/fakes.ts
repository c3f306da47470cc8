import { pino } from 'pino';
import type { DeviceRecord } from '../../../../devices/device-record.js';
import type { BusState, OpenedPort, OpenPort, PortHandlers, SerialClock } from '../../../../gateway/serial/bus.js';
import type { ModbusBus } from '../../../../gateway/serial/modbus-master.js';

export const silentLogger = pino({ level: 'silent' });

/** Lets every pending promise continuation run (nothing here waits on real I/O). */
export const flush = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

interface Timer {
  readonly id: number;
  readonly at: number;
  readonly fn: () => void;
}

/** A clock whose timers fire only when the test advances it, in time order. */
export interface FakeClock extends SerialClock {
  advance(ms: number): Promise<void>;
  /** Advances until `predicate` holds (checked after each timer), or throws after `maxMs`. */
  advanceUntil(predicate: () => boolean, maxMs: number): Promise<void>;
  pending(): number;
}

export function createFakeClock(start = 1_733_300_000_000): FakeClock {
  let now = start;
  let seq = 0;
  const timers = new Map<number, Timer>();
  const next = (): Timer | undefined => {
    let best: Timer | undefined;
    for (const t of timers.values()) if (best === undefined || t.at < best.at || (t.at === best.at && t.id < best.id)) best = t;
    return best;
  };
  const clock: FakeClock = {
    now: () => now,
    setTimeout(fn, ms) {
      const id = ++seq;
      timers.set(id, { id, at: now + Math.max(0, ms), fn });
      return id;
    },
    clearTimeout(handle) {
      timers.delete(handle as number);
    },
    async advance(ms) {
      const target = now + ms;
      await flush();
      for (;;) {
        const t = next();
        if (t === undefined || t.at > target) break;
        timers.delete(t.id);
        now = t.at;
        t.fn();
        await flush();
      }
      now = target;
      await flush();
    },
    async advanceUntil(predicate, maxMs) {
      const limit = now + maxMs;
      await flush();
      while (!predicate()) {
        const t = next();
        if (t === undefined || t.at > limit) throw new Error(`condition not met within ${maxMs} ms of fake time`);
        timers.delete(t.id);
        now = t.at;
        t.fn();
        await flush();
      }
    },
    pending: () => timers.size,
  };
  return clock;
}

export interface SentFrame {
  readonly at: number;
  readonly bytes: Buffer;
}

/**
 * A bus whose far end is a function: each request written gets the responder's chunks after
 * their delays (fake time). Reply `undefined` for silence.
 */
export interface FakeBus extends ModbusBus {
  readonly sent: SentFrame[];
  /** End of the last chunk delivered (fake time), for gap checks. */
  lastDeliveredAt: number;
  responder: (request: Buffer) => { chunks: Uint8Array[]; delayMs?: number } | undefined;
  goDown(reason?: string): void;
  goUp(): void;
  /** Bytes from the far end right now (noise). */
  deliver(bytes: Uint8Array): void;
}

export function createFakeBus(clock: FakeClock, id = 'rs485-test'): FakeBus {
  let state: BusState = 'open';
  const data = new Set<(chunk: Buffer, at: number) => void>();
  const up = new Set<() => void>();
  const down = new Set<(reason: string) => void>();
  const bus: FakeBus = {
    id,
    get state() {
      return state;
    },
    sent: [],
    lastDeliveredAt: Number.NEGATIVE_INFINITY,
    responder: () => undefined,
    write(bytes) {
      if (state !== 'open') return Promise.reject(new Error('fake bus not open'));
      const copy = Buffer.from(bytes);
      bus.sent.push({ at: clock.now(), bytes: copy });
      const reply = bus.responder(copy);
      if (reply !== undefined) {
        let at = reply.delayMs ?? 20;
        for (const chunk of reply.chunks) {
          clock.setTimeout(() => {
            if (state === 'open') bus.deliver(chunk);
          }, at);
          at += 1;
        }
      }
      return Promise.resolve();
    },
    onData(fn) {
      data.add(fn);
      return () => data.delete(fn);
    },
    onUp(fn) {
      up.add(fn);
      return () => up.delete(fn);
    },
    onDown(fn) {
      down.add(fn);
      return () => down.delete(fn);
    },
    goDown(reason = 'test') {
      state = 'reopening';
      for (const fn of [...down]) fn(reason);
    },
    goUp() {
      state = 'open';
      for (const fn of [...up]) fn();
    },
    deliver(bytes) {
      bus.lastDeliveredAt = clock.now();
      for (const fn of [...data]) fn(Buffer.from(bytes), clock.now());
    },
  };
  return bus;
}

export function meterRecord(id: string, address: number): DeviceRecord {
  return { id, model: 'elec-ers1', place: { grid: '110101013001002', building: '7', room: `B1-${address}` }, bus: 'rs485-test', address };
}

/** A scripted port for the bus: each open() takes the next outcome. */
export interface FakePortFactory {
  readonly openPort: OpenPort;
  readonly opens: number[];
  /** Outcome of the next open attempts: the string 'ok', or an error message. Default 'ok'. */
  outcomes: string[];
  /** Handlers of the currently open port, to make it fail. */
  handlers(): PortHandlers | undefined;
  writes: Buffer[];
  failWrites: boolean;
  closed: number;
}

export function createFakePortFactory(clock: SerialClock): FakePortFactory {
  let current: PortHandlers | undefined;
  const factory: FakePortFactory = {
    opens: [],
    outcomes: [],
    writes: [],
    failWrites: false,
    closed: 0,
    handlers: () => current,
    openPort(_options, handlers) {
      factory.opens.push(clock.now());
      const outcome = factory.outcomes.shift() ?? 'ok';
      if (outcome !== 'ok') return Promise.reject(Object.assign(new Error(outcome), outcome.includes('ENOENT') ? { code: 'ENOENT' } : {}));
      current = handlers;
      const port: OpenedPort = {
        write(bytes) {
          if (factory.failWrites) return Promise.reject(new Error('EIO: i/o error, write'));
          factory.writes.push(Buffer.from(bytes));
          return Promise.resolve();
        },
        close() {
          factory.closed++;
          return Promise.resolve();
        },
      };
      return Promise.resolve(port);
    },
  };
  return factory;
}
