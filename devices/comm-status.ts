/**
 * The readings the Modbus master emits about a meter rather than from it (SPEC §4.1: after 3
 * failed polls `comm_fault`, and `comm_restored` when it answers again; SPEC §4: while a bus is
 * down its devices get `comm_fault`). One place knows their shape.
 *
 * The other flags keep their last known values instead of dropping to false: the meter's state
 * is unknown, not all clear, and a false `leakage` would read as a recovery to the rules (and
 * re-raise every flag still set as a new event when the meter comes back).
 */
import type { DecodeContext, ModbusModel } from '../model.js';
import type { ReadingDraft } from '../reading.js';
import { COMM_FAULT, COMM_RESTORED } from './meter-model.js';

function commReading(model: ModbusModel, ctx: DecodeContext, fault: boolean): ReadingDraft {
  // The same keys as a decoded reading: the meter's flags, then comm_fault.
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

/** The reading that says a meter stopped answering; `ctx.receivedAt` is when the master gave up on it. */
export function commFaultReading(model: ModbusModel, ctx: DecodeContext): ReadingDraft {
  return commReading(model, ctx, true);
}

/**
 * The reading that says a meter answers again; emit it before the decoded reading of that
 * answer, and decode that answer with this reading's state as `previous`.
 */
export function commRestoredReading(model: ModbusModel, ctx: DecodeContext): ReadingDraft {
  return commReading(model, ctx, false);
}
