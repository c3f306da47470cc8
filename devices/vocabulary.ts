/**
 * The reading vocabulary of SPEC §2 as data: for each kind, the metrics, state flags and
 * events a reading may carry. The reading schema, the rule compiler and the line-protocol
 * writer all read these lists; nothing else spells them.
 */
export const KINDS = ['smoke', 'electrical', 'pager'] as const;
export type Kind = (typeof KINDS)[number];

export interface KindVocabulary {
  readonly metrics: readonly string[];
  readonly states: readonly string[];
  readonly events: readonly string[];
}

const TEMPERATURES = ['t1_c', 't2_c', 't3_c', 't4_c'] as const;

const ELECTRICAL_STATES = [
  'leakage',
  'overheat',
  'arc_fault',
  'overload',
  'over_voltage',
  'under_voltage',
  'short_circuit',
  'tripped',
  'comm_fault',
  // Not in SPEC §2's table: the ERS-1 fault word (CT open/short, probe open) needs a flag of its
  // own so that `device.fault` can fire for a meter too. See docs/SPEC-NOTES.md.
  'fault',
] as const;

export const VOCABULARY: Readonly<Record<Kind, KindVocabulary>> = {
  smoke: {
    metrics: ['battery_pct', 'rssi_dbm'],
    states: ['smoke', 'silenced', 'fault', 'battery_low', 'tamper', 'test'],
    events: [
      'fire_alarm',
      'fire_clear',
      'silenced',
      'fault',
      'fault_clear',
      'battery_low',
      'battery_ok',
      'tamper',
      'tamper_clear',
      'self_test',
      'heartbeat',
    ],
  },
  electrical: {
    metrics: [
      'voltage_v',
      'current_a',
      'power_w',
      'power_factor',
      'frequency_hz',
      'energy_kwh',
      'residual_ma',
      ...TEMPERATURES,
      'arc_count',
    ],
    states: ELECTRICAL_STATES,
    // SPEC §2: the rising edge of each state flag, plus comm_fault / comm_restored.
    events: [...ELECTRICAL_STATES, 'comm_restored'],
  },
  pager: {
    metrics: ['battery_pct', 'rssi_dbm'],
    // comm_fault: the RF bridge that hears the pager is down (SPEC §4; docs/SPEC-NOTES.md).
    states: ['battery_low', 'comm_fault'],
    events: [
      'sos',
      'service_call',
      'family_call',
      'fire_call',
      'cancel',
      'fall',
      'battery_low',
      'battery_ok',
      'tamper',
      'test',
      'heartbeat',
      'comm_fault',
      'comm_restored',
    ],
  },
};

/** SPEC §2: what a `service_call` may ask for. */
export const SERVICES = ['meal', 'shopping', 'medicine', 'cleaning', 'repair', 'consult'] as const;
export type Service = (typeof SERVICES)[number];

/**
 * Events that go through the alarm lane: never rate-limited, never dropped, committed at once
 * (SPEC §3, §5). `fire_call` is a resident reporting a fire from a pager: SPEC §3 leaves it out
 * of the list, but a fire call must not wait behind telemetry either (docs/SPEC-NOTES.md).
 */
export const ALARM_EVENTS: ReadonlySet<string> = new Set([
  'fire_alarm',
  'sos',
  'fall',
  'short_circuit',
  'arc_fault',
  'fire_call',
]);

/** Self-test events: recorded, never an incident (SPEC §6). */
export const SELF_TEST_EVENTS: ReadonlySet<string> = new Set(['self_test', 'test']);

export function isAlarmEvent(event: string): boolean {
  return ALARM_EVENTS.has(event);
}
