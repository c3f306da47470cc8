/**
 * One serial bus: a port opened by path that comes back by itself (SPEC §4). It owns the port,
 * the reopen backoff and the watch on the path; the protocol on top (Modbus master, RF reader)
 * sees bytes, `write()` and up/down transitions, never serialport.
 *
 * Why the path is watched: when a USB adapter vanishes while a read is in flight,
 * @serialport/bindings-cpp 13 retries the zero-byte read forever without an event
 * (serialport/bindings-cpp#162, reproduced in tests/integration/harness.test.ts). A Modbus master
 * notices on its next write, but an RF bridge bus only listens: without the watch it would sit
 * "open" on a dead adapter and every SOS would be lost in silence. The watch also notices a path
 * that now names another device (the adapter was re-plugged under the same by-id link), and, while
 * the bus is down, a path that comes back, so a re-plugged adapter is reopened at once instead of
 * at the end of a 30 s backoff.
 */
import { stat } from 'node:fs/promises';
import type { Logger } from 'pino';
import { SerialPort } from 'serialport';

/** Time, injected so that backoff and polling are tested without sleeping (STYLE.md). Same shape as ingest's SinkClock. */
export interface SerialClock {
  /** Wall-clock ms since the epoch: it becomes `receivedAt`. */
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemSerialClock: SerialClock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

export type Parity = 'none' | 'even' | 'odd' | 'mark' | 'space';
export type DataBits = 5 | 6 | 7 | 8;
export type StopBits = 1 | 1.5 | 2;

/**
 * - `closed`: not started, or stopped.
 * - `opening`: started, the first open has not finished yet (devices are not faulted for this).
 * - `open`: bytes flow.
 * - `reopening`: down (the first open failed, or the port was lost); waiting out the backoff.
 */
export type BusState = 'closed' | 'opening' | 'open' | 'reopening';

export interface PortOptions {
  readonly path: string;
  readonly baudRate: number;
  readonly dataBits: DataBits;
  readonly parity: Parity;
  readonly stopBits: StopBits;
}

/** What an opened port reports; the bus ignores calls from a port it has let go of. */
export interface PortHandlers {
  data(chunk: Buffer): void;
  error(err: Error): void;
  /** The port closed (hang-up, or a close the bus did not ask for). */
  close(err?: Error): void;
}

export interface OpenedPort {
  /** Resolves when the bytes are handed to the OS and drained (tcdrain). */
  write(bytes: Uint8Array): Promise<void>;
  /** Never rejects. */
  close(): Promise<void>;
}

/** Opens a port; rejects when it cannot (ENOENT when the path is missing). Injected for tests. */
export type OpenPort = (options: PortOptions, handlers: PortHandlers) => Promise<OpenedPort>;

export interface SerialBusDeps {
  readonly id: string;
  readonly path: string;
  readonly baudRate: number;
  readonly dataBits?: DataBits;
  readonly parity?: Parity;
  readonly stopBits?: StopBits;
  readonly logger: Logger;
  readonly clock?: SerialClock;
  /** Default: node-serialport's SerialPort. */
  readonly openPort?: OpenPort;
  /** SPEC §4: the first reopen waits 1 s, doubling to 30 s. */
  readonly reopenInitialMs?: number;
  readonly reopenMaxMs?: number;
  /** A port lost after staying open this long starts the backoff again from `reopenInitialMs`; sooner (a flapping adapter), it keeps doubling. */
  readonly stableMs?: number;
  /** How often the path is checked (stat) while started; 0 turns the watch off (a fake port in a unit test). */
  readonly watchIntervalMs?: number;
}

export interface SerialBusHealth {
  readonly id: string;
  readonly path: string;
  readonly state: BusState;
  /** When the bus entered `state` (clock ms). */
  readonly since: number;
  readonly lastError: string | undefined;
  /** Successful opens since start. */
  readonly opens: number;
  /** Transitions to down since start (failed first open included). */
  readonly downs: number;
  /** When the next open attempt is due while `reopening`. */
  readonly nextAttemptAt: number | undefined;
}

export interface SerialBus {
  readonly id: string;
  readonly path: string;
  readonly state: BusState;
  /** Opens the port; resolves after the first attempt (whether or not it opened). Never rejects: a bus that cannot open keeps trying. */
  start(): Promise<void>;
  /** Cancels every timer and closes the port. No `down` is announced: the gateway is going away, not the bus. */
  stop(): Promise<void>;
  /** Writes and drains; rejects when the bus is not open or the write fails (the bus then goes down and reopens). */
  write(bytes: Uint8Array): Promise<void>;
  /** Every chunk read, with the clock time it arrived. Returns an unsubscribe function. */
  onData(listener: (chunk: Buffer, at: number) => void): () => void;
  /** The port opened (first time or again). */
  onUp(listener: () => void): () => void;
  /** The bus went down: the first open failed, or the open port was lost. Once per transition. */
  onDown(listener: (reason: string) => void): () => void;
  health(): SerialBusHealth;
}

/** Modbus RTU character: start + data + parity + stop bits (serial line §2.5.1). */
export function bitsPerCharacter(dataBits: DataBits, parity: Parity, stopBits: StopBits): number {
  return 1 + dataBits + (parity === 'none' ? 0 : 1) + stopBits;
}

const CLOSE_TIMEOUT_MS = 1_000;

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function isMissing(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  if (code === 'ENOENT' || code === 'ENOTDIR') return true;
  // bindings-cpp reports open errors as "Error: No such file or directory, cannot open …" without a code.
  return /ENOENT|No such file or directory/i.test(messageOf(err));
}

/** Identity of what the path names now (device number and inode), or undefined when it names nothing. */
async function identify(path: string): Promise<string | undefined> {
  try {
    const st = await stat(path);
    return `${st.dev}:${st.ino}:${st.rdev}`;
  } catch {
    return undefined;
  }
}

/** node-serialport, wrapped to the bus's small port interface. */
export const openSerialPort: OpenPort = (options, handlers) =>
  new Promise<OpenedPort>((resolve, reject) => {
    const port = new SerialPort({
      path: options.path,
      baudRate: options.baudRate,
      dataBits: options.dataBits,
      parity: options.parity,
      stopBits: options.stopBits,
      autoOpen: false,
    });
    // The listeners stay for the port's whole life: an 'error' with no listener would crash the process.
    port.on('data', (chunk: Buffer) => handlers.data(chunk));
    port.on('error', (err: Error) => handlers.error(err));
    port.on('close', (err?: Error | null) => handlers.close(err ?? undefined));
    port.open((err) => {
      if (err) {
        reject(err);
        return;
      }
      resolve({
        write: (bytes) =>
          new Promise<void>((res, rej) => {
            port.write(Buffer.from(bytes), (writeErr) => {
              if (writeErr) {
                rej(writeErr);
                return;
              }
              port.drain((drainErr) => (drainErr ? rej(drainErr) : res()));
            });
          }),
        close: () =>
          new Promise<void>((res) => {
            if (!port.isOpen) {
              res();
              return;
            }
            // A hung-up port may never call back: do not let stop() wait on it.
            const timer = setTimeout(res, CLOSE_TIMEOUT_MS);
            port.close(() => {
              clearTimeout(timer);
              res();
            });
          }),
      });
    });
  });

/** Listeners run in a bulkhead: one that throws is logged and the others still hear the event. */
function notify<A extends unknown[]>(listeners: Set<(...args: A) => void>, log: Logger, what: string, ...args: A): void {
  for (const listener of [...listeners]) {
    try {
      listener(...args);
    } catch (err) {
      log.error({ err }, `a serial bus ${what} listener threw`);
    }
  }
}

export function createSerialBus(deps: SerialBusDeps): SerialBus {
  const clock = deps.clock ?? systemSerialClock;
  const openPort = deps.openPort ?? openSerialPort;
  const initialMs = deps.reopenInitialMs ?? 1_000;
  const maxMs = deps.reopenMaxMs ?? 30_000;
  const stableMs = deps.stableMs ?? 10_000;
  const watchMs = deps.watchIntervalMs ?? 1_000;
  const options: PortOptions = {
    path: deps.path,
    baudRate: deps.baudRate,
    dataBits: deps.dataBits ?? 8,
    parity: deps.parity ?? 'none',
    stopBits: deps.stopBits ?? 1,
  };
  const log = deps.logger.child({ module: 'serial-bus', bus: deps.id });
  // Writes are bounded so that a stuck drain cannot stall a master forever: 1 s plus four times the wire time.
  const charMs = (bitsPerCharacter(options.dataBits, options.parity, options.stopBits) * 1000) / options.baudRate;

  const dataListeners = new Set<(chunk: Buffer, at: number) => void>();
  const upListeners = new Set<() => void>();
  const downListeners = new Set<(reason: string) => void>();

  let state: BusState = 'closed';
  let since = clock.now();
  let port: OpenedPort | undefined;
  /** Bumped whenever the bus lets go of a port (or an attempt): late callbacks of the old one are ignored. */
  let generation = 0;
  let delayMs = initialMs;
  let reopenTimer: unknown;
  let nextAttemptAt: number | undefined;
  let watchTimer: unknown;
  let identity: string | undefined;
  let openedAt = 0;
  let lastError: string | undefined;
  /**
   * While down: what the path named when last looked at (undefined: nothing; null: not looked at
   * yet). When it changes to a device (the adapter is back, or re-plugged), the bus reopens at once.
   */
  let seenWhileDown: string | undefined | null = null;
  let opens = 0;
  let downs = 0;
  /** The last transition announced, so that `down` is said once per outage. */
  let announced: 'up' | 'down' | undefined;

  // A function, not `state === 'closed'` inline: stop() may run during any await.
  const stopped = (): boolean => state === 'closed';
  const setState = (next: BusState): void => {
    if (state !== next) since = clock.now();
    state = next;
  };

  function announceDown(reason: string): void {
    if (announced === 'down') return;
    announced = 'down';
    downs++;
    notify(downListeners, log, 'down', reason);
  }

  function scheduleReopen(): void {
    const wait = delayMs;
    delayMs = Math.min(delayMs * 2, maxMs);
    nextAttemptAt = clock.now() + wait;
    reopenTimer = clock.setTimeout(() => {
      reopenTimer = undefined;
      void attempt();
    }, wait);
    log.info({ retryInMs: wait }, 'serial bus down, reopening with backoff');
  }

  function cancelReopen(): void {
    if (reopenTimer !== undefined) clock.clearTimeout(reopenTimer);
    reopenTimer = undefined;
    nextAttemptAt = undefined;
  }

  function handlersFor(gen: number): PortHandlers {
    return {
      data(chunk) {
        if (gen !== generation || state !== 'open') return;
        notify(dataListeners, log, 'data', chunk, clock.now());
      },
      error(err) {
        lose(gen, `port error: ${err.message}`);
      },
      close(err) {
        lose(gen, err ? `port closed: ${err.message}` : 'port closed');
      },
    };
  }

  async function attempt(): Promise<void> {
    if (state === 'closed') return;
    cancelReopen();
    const gen = ++generation;
    let opened: OpenedPort;
    try {
      opened = await openPort(options, handlersFor(gen));
    } catch (err) {
      if (gen !== generation || stopped()) return;
      // Missing: its appearance is a change. Present but unopenable (busy, no permission): wait for a change.
      seenWhileDown = isMissing(err) ? undefined : null;
      lastError = `open failed: ${messageOf(err)}`;
      log.warn({ err: messageOf(err), path: options.path }, 'cannot open serial port');
      setState('reopening');
      announceDown(lastError);
      scheduleReopen();
      return;
    }
    if (gen !== generation || stopped()) {
      await opened.close();
      return;
    }
    port = opened;
    identity = undefined;
    seenWhileDown = null;
    openedAt = clock.now();
    opens++;
    setState('open');
    log.info({ path: options.path, baudRate: options.baudRate }, 'serial bus open');
    announced = 'up';
    notify(upListeners, log, 'up');
    if (watchMs > 0) {
      const seen = await identify(options.path);
      // Only if this port is still the one open: it may have been lost while we looked at the path.
      if (gen === generation && state === 'open') identity = seen;
    }
  }

  /** The open port is gone (error, close, failed write, path vanished): let it go and reopen with backoff. */
  function lose(gen: number, reason: string, missing = false): void {
    if (gen !== generation || state !== 'open') return;
    generation++;
    // The dead port's device: the path naming it again is no news, naming another one is.
    seenWhileDown = missing ? undefined : (identity ?? null);
    const old = port;
    port = undefined;
    identity = undefined;
    lastError = reason;
    if (clock.now() - openedAt >= stableMs) delayMs = initialMs;
    void old?.close();
    log.warn({ reason }, 'serial port lost');
    setState('reopening');
    announceDown(reason);
    scheduleReopen();
  }

  async function watch(): Promise<void> {
    watchTimer = undefined;
    if (state === 'closed') return;
    const gen = generation;
    const now = await identify(options.path);
    if (stopped()) return;
    if (gen === generation) {
      if (state === 'open') {
        if (now === undefined) lose(gen, `path ${options.path} vanished`, true);
        else if (identity !== undefined && now !== identity) lose(gen, `path ${options.path} now names another device`);
      } else if (state === 'reopening' && reopenTimer !== undefined) {
        const before = seenWhileDown;
        seenWhileDown = now;
        if (before !== null && now !== undefined && now !== before) {
          log.info({ path: options.path }, 'serial path is back, reopening now');
          void attempt();
        }
      }
    }
    scheduleWatch();
  }

  function scheduleWatch(): void {
    if (watchMs <= 0 || state === 'closed' || watchTimer !== undefined) return;
    watchTimer = clock.setTimeout(() => {
      void watch().catch((err: unknown) => log.error({ err }, 'serial path watch failed'));
    }, watchMs);
  }

  return {
    id: deps.id,
    path: deps.path,
    get state() {
      return state;
    },
    async start() {
      if (state !== 'closed') return;
      setState('opening');
      announced = undefined;
      delayMs = initialMs;
      scheduleWatch();
      await attempt();
    },
    async stop() {
      setState('closed');
      generation++;
      cancelReopen();
      if (watchTimer !== undefined) clock.clearTimeout(watchTimer);
      watchTimer = undefined;
      const old = port;
      port = undefined;
      identity = undefined;
      await old?.close();
      log.debug('serial bus stopped');
    },
    write(bytes) {
      const current = port;
      if (state !== 'open' || current === undefined) {
        return Promise.reject(new Error(`serial bus ${deps.id} is not open (${state})`));
      }
      const gen = generation;
      const limitMs = 1_000 + 4 * charMs * bytes.length;
      return new Promise<void>((resolve, reject) => {
        let settled = false;
        const timer = clock.setTimeout(() => {
          if (settled) return;
          settled = true;
          const reason = `write of ${bytes.length} bytes did not drain within ${Math.round(limitMs)} ms`;
          lose(gen, reason);
          reject(new Error(reason));
        }, limitMs);
        current.write(bytes).then(
          () => {
            if (settled) return;
            settled = true;
            clock.clearTimeout(timer);
            resolve();
          },
          (err: unknown) => {
            if (settled) return;
            settled = true;
            clock.clearTimeout(timer);
            lose(gen, `write failed: ${messageOf(err)}`);
            reject(err instanceof Error ? err : new Error(messageOf(err)));
          },
        );
      });
    },
    onData(listener) {
      dataListeners.add(listener);
      return () => dataListeners.delete(listener);
    },
    onUp(listener) {
      upListeners.add(listener);
      return () => upListeners.delete(listener);
    },
    onDown(listener) {
      downListeners.add(listener);
      return () => downListeners.delete(listener);
    },
    health() {
      return { id: deps.id, path: deps.path, state, since, lastError, opens, downs, nextAttemptAt };
    },
  };
}
