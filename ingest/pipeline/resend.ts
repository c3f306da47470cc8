import type { Reading } from '../../devices/reading.js';
import type { StoredReading } from '../store/index.js';

/**
 * At-least-once without duplicates in the store (issue 4). A device resends a QoS 1 publish whose
 * PUBACK it never got — after a gateway crash between commit and PUBACK, say — and MQTT 3.1.1
 * clients (mqtt.js among them) do not reliably set DUP. When the device stamped the reading with
 * its own time, the resend is recognisable: same device, same device time, same metrics and
 * state, and either the same events or, because the copy is now decoded against the state the
 * first one left, only a heartbeat. A different event at the same instant (an sos, then a fall)
 * is not a resend. Readings without a device time cannot be told apart and are kept (the rules
 * fold a repeated alarm into its incident).
 */
export function isResendOf(reading: Reading, stored: readonly StoredReading[]): boolean {
  const key = contentKey(reading);
  const onlyHeartbeat = reading.events.every((e) => e === 'heartbeat');
  return stored.some(({ reading: s }) => s.ts === reading.ts && contentKey(s) === key && (onlyHeartbeat || sameEvents(s.events, reading.events)));
}

function contentKey(r: Reading): string {
  return JSON.stringify([sorted(r.metrics), sorted(r.state), r.service ?? null]);
}

function sorted<T>(o: Readonly<Record<string, T>>): [string, T][] {
  return Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

function sameEvents(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((e, i) => e === b[i]);
}
