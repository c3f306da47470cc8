import { fail, ok, type Result } from '../../errors.js';
import type { DecodeContext, EncodeSample, RfModel, RfPress } from '../../model.js';
import type { ReadingDraft } from '../../reading.js';
import { encodeRfFrame, RF_EXAMPLE_TIMING } from '../../rf/frame-parser.js';

/**
 * `pager-rf`: a 433 MHz EV1527 "little helper" pager heard through an RF bridge (SPEC §4.3).
 * The wire side (framing, repeat folding, the two-word SOS) is in `devices/rf/`; this codec
 * turns one folded press into a reading.
 */

/** SPEC §4.3: key code → event. Any other key is DEV_ERR_UNKNOWN_CODE. */
const KEY_EVENTS: ReadonlyMap<number, string> = new Map([
  [0x1, 'sos'],
  [0x2, 'service_call'],
  [0x4, 'family_call'],
  [0x8, 'cancel'],
  [0xe, 'test'],
  [0xf, 'battery_low'],
]);

const EVENT_KEYS: ReadonlyMap<string, number> = new Map([...KEY_EVENTS].map(([key, event]) => [event, key]));

/**
 * SPEC §6: a pager-rf is offline after 35 days without a test press. It sends nothing unprompted,
 * so its "heartbeat" is the monthly test press, and `silentFor: 2x` must come to 35 days:
 * heartbeatMs = 35 d / 2 = 17.5 d = 1 512 000 000 ms.
 */
const HEARTBEAT_MS = (35 * 24 * 60 * 60 * 1000) / 2;

const RF_ID = /^[0-9A-F]{5}$/;

/**
 * State: `battery_low` only, and it is sticky. The pager's battery_low key (0xF) is the only
 * battery information an EV1527 pager sends, and it has no "battery ok" word. So:
 * - a 0xF press sets battery_low; the `battery_low` event is emitted only when the flag rises
 *   against `previous` (a second 0xF press while already low is a reading with no event);
 * - any other press (a test press included) carries the previous flag forward: not hearing the
 *   low-battery word says nothing about the battery, and a test press must not hide a dying pager;
 * - pager-rf therefore never produces `battery_ok`: clearing the flag after a battery change is an
 *   operator action on the stored state, outside the codec.
 */
function decode(press: RfPress, ctx: DecodeContext): Result<ReadingDraft> {
  const event = KEY_EVENTS.get(press.key);
  if (event === undefined) {
    return fail('DEV_ERR_UNKNOWN_CODE', `pager-rf key 0x${press.key.toString(16).toUpperCase()}`, ['key']);
  }
  const wasLow = ctx.previous?.['battery_low'] ?? false;
  const batteryLow = event === 'battery_low' || wasLow;
  const events = event === 'battery_low' && wasLow ? [] : [event];
  // A pager-rf service_call does not say which service (one button): `service` is left out.
  return ok({
    deviceId: ctx.deviceId,
    model: 'pager-rf',
    kind: 'pager',
    // The pager has no clock: the time is when the first word of the press was heard.
    ts: ctx.receivedAt,
    receivedAt: ctx.receivedAt,
    metrics: {},
    state: { battery_low: batteryLow },
    events,
  });
}

function encodeFrame(id: string, key: number): Buffer {
  if (!RF_ID.test(id)) throw new RangeError(`pager-rf id must be 5 upper-case hex digits, got ${JSON.stringify(id)}`);
  if (!Number.isInteger(key) || key < 0 || key > 0xf) throw new RangeError(`pager-rf key must be 0..15, got ${key}`);
  return encodeRfFrame({ ...RF_EXAMPLE_TIMING, code: (Number.parseInt(id, 16) << 4) | key });
}

function keyFor(sample: EncodeSample): number {
  const event = sample.events?.[0];
  const key = event === undefined ? undefined : EVENT_KEYS.get(event);
  if (key === undefined) throw new RangeError(`pager-rf cannot send ${event === undefined ? 'a sample without events' : `event ${event}`}`);
  return key;
}

export const model: RfModel = {
  id: 'pager-rf',
  kind: 'pager',
  transport: 'rf-bridge',
  description: '433 MHz EV1527 pager via an RF bridge (AA A4 … 55 frames); keys sos, service, family, cancel, test, battery low',
  heartbeatMs: HEARTBEAT_MS,
  produces: {
    metrics: [],
    states: ['battery_low'],
    events: [...KEY_EVENTS.values()],
  },
  decode,
  encodeFrame,
  keyFor,
};
