import type { RfPress } from '../model.js';
import type { RfWord } from './frame-parser.js';

/** EV1527 key of the SOS button (SPEC §4.3). */
export const RF_KEY_SOS = 0x1;

/** SPEC §4.3: the same code repeated within 1.5 s is one press. */
export const RF_PRESS_WINDOW_MS = 1500;

/**
 * Upper bound on the codes tracked at once. A bridge at 19 200 baud delivers at most
 * 1920 / 12 = 160 words/s, i.e. 240 in one 1.5 s window, so a real radio never reaches this; it
 * only bounds memory when a flood (or a faster bridge, or a bug) does.
 */
export const RF_MAX_TRACKED_CODES = 1024;

export interface PressDetectorOptions {
  readonly windowMs?: number;
  readonly maxCodes?: number;
}

export interface PressDetectorCounters {
  /** Words pushed. */
  readonly words: number;
  /** Presses emitted. */
  readonly presses: number;
  /** SOS words that stayed alone for a whole window: not an SOS (SPEC §4.3), but worth watching. */
  readonly straySos: number;
  /** Codes forgotten early because `maxCodes` were tracked (a flood); their next word starts afresh. */
  readonly evicted: number;
}

export interface PressDetector {
  /** One word heard at gateway time `at` (ms, from a monotonic clock); returns the presses it completes. */
  push(word: Pick<RfWord, 'code' | 'id' | 'key'>, at: number): RfPress[];
  /** Forgets codes whose window has passed by `now` (and counts stray SOS words). `push` does this too. */
  expire(now: number): void;
  /** Codes currently tracked (≤ maxCodes). */
  readonly size: number;
  readonly counters: PressDetectorCounters;
}

interface CodeState {
  readonly id: string;
  readonly key: number;
  readonly firstAt: number;
  lastAt: number;
  words: number;
  emitted: boolean;
}

/**
 * Folds EV1527 words into presses (SPEC §4.3). Pure: time is passed in.
 *
 * Exact semantics, per 24-bit code (id and key together; two keys of one pager are independent):
 * - A word is a *repeat* when it comes within `windowMs` (inclusive: 1500 ms is still a repeat,
 *   1501 ms is not) of the *previous word of that code*. The window slides: a button held for
 *   ten seconds, or the bridge's three-fold EV1527 repeat, is one press however long it lasts.
 *   Any other word starts a new press.
 * - A non-SOS key emits its press on the first word of the press, at once: a service call is
 *   never delayed waiting for a repeat. Repeats emit nothing.
 * - An SOS (key 0x1) needs two matching words: the press is emitted on the second word of the
 *   press (which by definition came within `windowMs` of the first). Further repeats emit
 *   nothing. A first SOS word with no repeat in its window is dropped and counted as `straySos`:
 *   one word of noise must not raise a critical incident. An SOS pressed again after a gap
 *   longer than the window is a second press and is emitted again.
 * - The emitted press has `at` = time of the press's first word and `words` = words heard when it
 *   was emitted (1, or 2 for an SOS).
 * - The state of a code is dropped once its window has passed (on every `push`, and on
 *   `expire`). Codes are kept ordered by their last word, so this is O(1) amortised and memory
 *   is bounded by the words of one window; `maxCodes` caps it even under a flood of distinct
 *   codes (the least recently heard code is evicted; an SOS evicted after its first word still
 *   fires on its next two words, as a real pager keeps sending while the button is down).
 * - `at` should come from a monotonic clock. If it does go backwards, a gap of more than the
 *   window in either direction still starts a new press, so a clock step never swallows an SOS.
 */
export function createPressDetector(options: PressDetectorOptions = {}): PressDetector {
  const windowMs = options.windowMs ?? RF_PRESS_WINDOW_MS;
  const maxCodes = options.maxCodes ?? RF_MAX_TRACKED_CODES;
  if (!Number.isFinite(windowMs) || windowMs < 0) throw new RangeError(`press detector windowMs must be a finite number ≥ 0, got ${windowMs}`);
  if (!Number.isInteger(maxCodes) || maxCodes < 1) throw new RangeError(`press detector maxCodes must be an integer ≥ 1, got ${maxCodes}`);

  // Insertion order = order of last word (we delete and re-insert on every word).
  const codes = new Map<number, CodeState>();
  let words = 0;
  let presses = 0;
  let straySos = 0;
  let evicted = 0;

  const within = (s: CodeState, at: number): boolean => Math.abs(at - s.lastAt) <= windowMs;

  function forget(code: number, s: CodeState): void {
    codes.delete(code);
    if (s.key === RF_KEY_SOS && !s.emitted) straySos++;
  }

  function expire(now: number): void {
    for (const [code, s] of codes) {
      if (within(s, now)) break;
      forget(code, s);
    }
  }

  function push(word: Pick<RfWord, 'code' | 'id' | 'key'>, at: number): RfPress[] {
    words++;
    expire(at);
    const prev = codes.get(word.code);
    if (prev !== undefined && within(prev, at)) {
      codes.delete(word.code);
      codes.set(word.code, prev);
      prev.lastAt = at;
      prev.words++;
      if (prev.emitted) return [];
      prev.emitted = true;
      presses++;
      return [{ id: prev.id, key: prev.key, words: prev.words, at: prev.firstAt }];
    }
    if (prev !== undefined) forget(word.code, prev); // stale (clock went backwards): a new press
    const isSos = word.key === RF_KEY_SOS;
    const state: CodeState = { id: word.id, key: word.key, firstAt: at, lastAt: at, words: 1, emitted: !isSos };
    codes.set(word.code, state);
    while (codes.size > maxCodes) {
      const oldest = codes.keys().next();
      if (oldest.done === true) break;
      codes.delete(oldest.value);
      evicted++;
    }
    if (isSos) return [];
    presses++;
    return [{ id: word.id, key: word.key, words: 1, at }];
  }

  return {
    push,
    expire,
    get size() {
      return codes.size;
    },
    get counters() {
      return { words, presses, straySos, evicted };
    },
  };
}
