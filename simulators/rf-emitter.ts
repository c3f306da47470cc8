/**
 * A simulated 433 MHz RF bridge (SPEC §4.3) on a serial port: what the gateway's `rf-bridge` bus
 * hears when a resident presses a pager. An EV1527 pager sends its 24-bit word several times per
 * press; the bridge reports each word it decodes as one `AA A4 … 55` frame, so one press is
 * `repeats` frames about `gapMs` apart.
 */
import { SerialPort } from 'serialport';
import type { EncodeSample, RfModel } from '../devices/model.js';
import { model as pagerRf } from '../devices/models/pager-rf/index.js';

export interface RfEmitterOptions {
  readonly path: string;
  /** SPEC §4.3: 19200 8N1. */
  readonly baudRate?: number;
  /** The codec whose frames are sent (default `pager-rf`). */
  readonly model?: RfModel;
}

export interface PressOptions {
  /** Words per press (default 3, as a real EV1527 is heard by the bridge). */
  readonly repeats?: number;
  /** Between words (default 40 ms). */
  readonly gapMs?: number;
}

export interface RfEmitter {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** One press of `key` on pager `rfId` (5 hex digits); resolves when the last word is written. */
  press(rfId: string, key: number, options?: PressOptions): Promise<void>;
  /** A press of the key a sample's first event maps to (`{ events: ['sos'] }`). */
  pressEvent(rfId: string, sample: EncodeSample, options?: PressOptions): Promise<void>;
  /** The frame of one word, for a test that wants to split or garble it. */
  frame(rfId: string, key: number): Buffer;
  /** Raw bytes (garbage, a frame cut in two) onto the line. */
  write(bytes: Uint8Array): Promise<void>;
}

export function createRfEmitter(options: RfEmitterOptions): RfEmitter {
  const baudRate = options.baudRate ?? 19_200;
  const model = options.model ?? pagerRf;
  let port: SerialPort | undefined;
  /** Writes go out in order even when presses overlap. */
  let queue: Promise<void> = Promise.resolve();

  const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

  function writeNow(bytes: Uint8Array): Promise<void> {
    const p = port;
    if (p === undefined || !p.isOpen) return Promise.reject(new Error(`rf emitter on ${options.path} is not open`));
    return new Promise<void>((resolve, reject) => {
      p.write(Buffer.from(bytes), (err) => {
        if (err) {
          reject(err);
          return;
        }
        p.drain((drainErr) => (drainErr ? reject(drainErr) : resolve()));
      });
    });
  }

  function enqueue(job: () => Promise<void>): Promise<void> {
    const next = queue.then(job);
    // The queue goes on after a failed job; the caller still sees the failure.
    queue = next.catch(() => undefined);
    return next;
  }

  const emitter: RfEmitter = {
    async start() {
      const p = new SerialPort({ path: options.path, baudRate, autoOpen: false });
      p.on('error', () => undefined);
      await new Promise<void>((resolve, reject) => p.open((err) => (err ? reject(err) : resolve())));
      port = p;
    },
    async stop() {
      const p = port;
      port = undefined;
      if (p?.isOpen === true) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, 1_000);
          p.close(() => {
            clearTimeout(timer);
            resolve();
          });
        });
      }
    },
    frame: (rfId, key) => model.encodeFrame(rfId, key),
    press(rfId, key, pressOptions = {}) {
      const repeats = pressOptions.repeats ?? 3;
      const gapMs = pressOptions.gapMs ?? 40;
      const word = model.encodeFrame(rfId, key);
      return enqueue(async () => {
        for (let i = 0; i < repeats; i++) {
          if (i > 0) await sleep(gapMs);
          await writeNow(word);
        }
      });
    },
    pressEvent(rfId, sample, pressOptions) {
      return emitter.press(rfId, model.keyFor(sample), pressOptions);
    },
    write(bytes) {
      return enqueue(() => writeNow(bytes));
    },
  };
  return emitter;
}
