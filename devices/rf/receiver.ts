import type { RfPress } from '../model.js';
import { createRfFrameParser, type RfFrameCounters } from './frame-parser.js';
import { createPressDetector, type PressDetectorCounters, type PressDetectorOptions } from './press-detector.js';

export type RfReceiverCounters = RfFrameCounters & PressDetectorCounters;

/** Bytes in, presses out: what a `rf-bridge` serial source needs from the catalogue (SPEC §4.3). */
export interface RfReceiver {
  /** A chunk read from the port at gateway time `at` (monotonic ms). Never throws. */
  push(chunk: Uint8Array, at: number): RfPress[];
  /** Call now and then (e.g. each second) so lone SOS words are counted even when the radio is quiet. */
  expire(now: number): void;
  /** The port was closed or reopened: a partial frame will never be completed. */
  reset(): void;
  readonly counters: RfReceiverCounters;
}

export function createRfReceiver(options: PressDetectorOptions = {}): RfReceiver {
  const parser = createRfFrameParser();
  const detector = createPressDetector(options);
  return {
    push(chunk, at) {
      return parser.push(chunk).flatMap((word) => detector.push(word, at));
    },
    expire: (now) => detector.expire(now),
    reset: () => parser.reset(),
    get counters() {
      return { ...parser.counters, ...detector.counters };
    },
  };
}
