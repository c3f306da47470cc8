import { z } from 'zod';
import { SERVICES } from '../../vocabulary.js';
import { BatteryPctSchema, DeviceTimeSchema } from '../mqtt-common.js';

/** SPEC §3.3: the events a 4G pager sends. `battery_low` / `battery_ok` are not among them: they come from `battery`. */
export const PAGER_WIRE_EVENTS = ['sos', 'service_call', 'family_call', 'fire_call', 'cancel', 'fall', 'heartbeat', 'test'] as const;
export type PagerWireEvent = (typeof PAGER_WIRE_EVENTS)[number];

const OTHER_EVENTS = PAGER_WIRE_EVENTS.filter((e): e is Exclude<PagerWireEvent, 'service_call'> => e !== 'service_call');

const Common = z.object({
  ts: DeviceTimeSchema.optional(),
  battery: BatteryPctSchema.optional(),
});

/**
 * SPEC §3.3 `pager-json`. `service` belongs to `service_call` only (SPEC §2):
 * - with `service_call` it must be one of SERVICES (else DEV_ERR_SCHEMA); it may be missing, for
 *   pagers with a single "service" button — the call still reaches the grid worker;
 * - with any other event it is ignored, whatever it holds: an SOS must never be dead-lettered over
 *   a field that does not concern it (a firmware that leaves the last service in every message).
 * An event outside the list is DEV_ERR_SCHEMA (the event is a string enum of the wire contract;
 * DEV_ERR_UNKNOWN_CODE is for numeric status and key codes). Unknown keys are tolerated (mqtt-common.ts).
 */
export const PagerJsonPayloadSchema = z.discriminatedUnion('event', [
  Common.extend({ event: z.literal('service_call'), service: z.enum(SERVICES).optional() }),
  Common.extend({ event: z.enum(OTHER_EVENTS) }),
]);
export type PagerJsonPayload = z.infer<typeof PagerJsonPayloadSchema>;

export function isPagerWireEvent(event: string): event is PagerWireEvent {
  return (PAGER_WIRE_EVENTS as readonly string[]).includes(event);
}
