import type { DecodeError } from '../errors.js';
import { hexToBytes, type Fixture } from '../fixtures.js';
import type { DeviceState, RfModel, RfPress } from '../model.js';
import type { ReadingDraft } from '../reading.js';
import { createRfReceiver } from './receiver.js';

export type RfStream = readonly { readonly at: number; readonly hex: string }[];

/** A press of a registered pager that did not decode: the codec's error, with the press and device. */
export interface RfStreamError extends DecodeError {
  readonly press: RfPress;
  readonly deviceId: string;
}

export interface RfStreamResult {
  /** Every reading, in the order the presses were emitted. */
  readonly readings: ReadingDraft[];
  /** Ids of presses from pagers not in `context.rfIds`, in the order first heard, each once. */
  readonly unregistered: string[];
  /** Presses of registered pagers that did not decode (e.g. DEV_ERR_UNKNOWN_CODE), in order. */
  readonly errors: RfStreamError[];
}

/**
 * Runs an rf-bridge fixture the way the serial source runs the port (SPEC §4.3): each chunk goes to
 * the frame parser at `context.receivedAt + at`, the words to the press detector, and each press is
 * resolved against `context.rfIds` (the registry) and decoded with the state of that device's
 * previous reading in this stream as `previous`. `context.previous`, when given, is the stored
 * state of `context.deviceId` before the stream starts. Pure apart from `hexToBytes` throwing on a
 * malformed fixture.
 */
export function runRfStream(stream: RfStream, context: Fixture['context'], model: RfModel): RfStreamResult {
  const receiver = createRfReceiver();
  const rfIds = context.rfIds ?? {};
  const lastState = new Map<string, DeviceState>();
  if (context.previous !== undefined) lastState.set(context.deviceId, context.previous);
  const readings: ReadingDraft[] = [];
  const unregistered: string[] = [];
  const errors: RfStreamError[] = [];

  for (const chunk of stream) {
    for (const press of receiver.push(hexToBytes(chunk.hex), context.receivedAt + chunk.at)) {
      // Own properties only: the registry map is a plain object.
      const deviceId = Object.hasOwn(rfIds, press.id) ? rfIds[press.id] : undefined;
      if (deviceId === undefined) {
        if (!unregistered.includes(press.id)) unregistered.push(press.id);
        continue;
      }
      const decoded = model.decode(press, { deviceId, receivedAt: press.at, previous: lastState.get(deviceId) });
      if (decoded.ok) {
        readings.push(decoded.value);
        lastState.set(deviceId, decoded.value.state);
      } else {
        errors.push({ ...decoded.error, press, deviceId });
      }
    }
  }
  return { readings, unregistered, errors };
}

