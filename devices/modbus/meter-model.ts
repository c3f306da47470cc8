/**
 * A Modbus meter model built from its register map: the decode every meter shares (frame checks,
 * the generic register decoder, rising-edge events), so a new meter is a map and a few lines.
 */
import { stateChanges } from '../codec-helpers.js';
import { ok, type Result } from '../errors.js';
import type { EncodeSample, ModbusContext, ModbusModel, Produces } from '../model.js';
import type { ReadingDraft } from '../reading.js';
import { VOCABULARY } from '../vocabulary.js';
import { COMM_FAULT, COMM_RESTORED } from '../comm-status.js';
import { parseReadResponse } from './frames.js';
import { decodeRegisters, encodeRegisters, mapFlags, mapMetrics, type RegisterMap } from './register-map.js';

/** Set by the master, never by a meter: a decoded reading always says the meter answered (SPEC §4.1). */
export { COMM_FAULT, COMM_RESTORED };

export interface MeterDefinition {
  readonly id: string;
  readonly description: string;
  /** The poll interval: a polled meter "reports" once per poll (SPEC §4.1, default 1 s). */
  readonly heartbeatMs: number;
  readonly map: RegisterMap;
}

const ELECTRICAL = VOCABULARY.electrical;

function inVocabularyOrder(vocabulary: readonly string[], names: Iterable<string>): string[] {
  const set = new Set(names);
  return vocabulary.filter((n) => set.has(n));
}

/**
 * The catalogue entry of a Modbus meter. Meters are `electrical` (the only kind with
 * `comm_fault`). Throws at definition when the map names a metric or flag outside the
 * electrical vocabulary, or claims `comm_fault`, which only the master sets.
 */
export function defineModbusMeter(def: MeterDefinition): ModbusModel {
  const { id, map } = def;
  const metrics = mapMetrics(map);
  const flags = mapFlags(map);
  const unknownMetric = metrics.find((m) => !ELECTRICAL.metrics.includes(m));
  if (unknownMetric !== undefined) throw new Error(`${id}: ${unknownMetric} is not an electrical metric`);
  const unknownFlag = flags.find((f) => !ELECTRICAL.states.includes(f) || f === COMM_FAULT);
  if (unknownFlag !== undefined) throw new Error(`${id}: ${unknownFlag} is not a state flag a meter can report`);

  const states = inVocabularyOrder(ELECTRICAL.states, flags);
  // What a decoded frame can set, so that the contract test can hold the fixtures to it. A
  // decoded reading also carries comm_fault, always false; comm_fault true and the comm_fault /
  // comm_restored events are the master's (comm-status.ts), and no fixture could show them.
  const produces: Produces = {
    metrics: inVocabularyOrder(ELECTRICAL.metrics, metrics),
    states,
    // SPEC §2: the rising edge of each flag the meter reports.
    events: inVocabularyOrder(ELECTRICAL.events, flags),
  };

  return {
    id,
    kind: 'electrical',
    transport: 'modbus-rtu',
    description: def.description,
    heartbeatMs: def.heartbeatMs,
    produces,
    poll: map.poll,
    decode(frame: Uint8Array, ctx: ModbusContext): Result<ReadingDraft> {
      const values = parseReadResponse(frame, { slave: ctx.address, count: map.poll.count });
      if (!values.ok) return values;
      const decoded = decodeRegisters(map, values.value);
      if (!decoded.ok) return decoded;
      const state: Record<string, boolean> = { ...decoded.value.state, [COMM_FAULT]: false };
      const { rose } = stateChanges(ctx.previous, state);
      return ok({
        deviceId: ctx.deviceId,
        model: id,
        kind: 'electrical',
        // A meter has no clock on the wire: the reading is as of when the reply arrived (SPEC §2).
        ts: ctx.receivedAt,
        receivedAt: ctx.receivedAt,
        metrics: decoded.value.metrics,
        state,
        events: inVocabularyOrder(states, rose), // comm_fault never rises here
      });
    },
    encodeRegisters(sample: EncodeSample): number[] {
      return encodeRegisters(map, sample);
    },
  };
}
