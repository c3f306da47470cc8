/**
 * The readings a serial bus emits about a device rather than from it (SPEC §4.1: after 3 failed
 * polls a meter gets `comm_fault`, and `comm_restored` when it answers again; SPEC §4: while a
 * bus is down its devices get `comm_fault` — meters on a Modbus bus, pagers on an RF bridge, whose
 * presses nobody can hear then). One place knows their shape.
 *
 * The other flags keep their last known values instead of dropping to false: the device's state
 * is unknown, not all clear, and a false `leakage` would read as a recovery to the rules (and
 * re-raise every flag still set as a new event when the device comes back).
 */
import type { DecodeContext, ModbusModel, RfModel } from './model.js';
import type { ReadingDraft } from './reading.js';

export const COMM_FAULT = 'comm_fault';
export const COMM_RESTORED = 'comm_restored';

function commReading(model: ModbusModel | RfModel, ctx: DecodeContext, fault: boolean): ReadingDraft {
  // The same keys as a decoded reading: the device's flags, then comm_fault.
  const state: Record<string, boolean> = {};
  for (const flag of model.produces.states) state[flag] = ctx.previous?.[flag] ?? false;
  state[COMM_FAULT] = fault;
  return {
    deviceId: ctx.deviceId,
    model: model.id,
    kind: model.kind,
    ts: ctx.receivedAt,
    receivedAt: ctx.receivedAt,
    metrics: {},
    state,
    events: [fault ? COMM_FAULT : COMM_RESTORED],
  };
}

/** The reading that says a device stopped answering (or cannot be heard); `ctx.receivedAt` is when that was seen. */
export function commFaultReading(model: ModbusModel | RfModel, ctx: DecodeContext): ReadingDraft {
  return commReading(model, ctx, true);
}

/**
 * The reading that says a meter answers again; emit it before the decoded reading of that
 * answer, and decode that answer with this reading's state as `previous`.
 */
export function commRestoredReading(model: ModbusModel | RfModel, ctx: DecodeContext): ReadingDraft {
  return commReading(model, ctx, false);
}
