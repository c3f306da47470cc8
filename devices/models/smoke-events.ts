import type { DeviceState, EncodeSample, Produces } from '../model.js';
import { VOCABULARY } from '../vocabulary.js';
import { BATTERY_EDGES, edgeEvents, flagsFromEvents, inVocabularyOrder, type EdgeTable } from './mqtt-common.js';

/*
 * Smoke detector state and the events derived from it, shared by smoke-json and smoke-ctw.
 *
 * SPEC §3.3: events are edges of the state against the device's last known state (`ctx.previous`,
 * which after a restart is the stored state, not "all clear"). A flag that stays set gives no new
 * event: a repeated alarm message is a heartbeat, not a second fire.
 *
 * Self-test rule (SPEC §6: a self-test is recorded but raises no incident): `test` describes the
 * message it arrives in, and while it is true the detector's smoke output is the test, not a fire.
 * So a test message never changes `smoke`: it keeps its previous value. A self-test therefore neither
 * raises `fire_alarm` (smoke sounding during the test) nor gives `fire_clear` (someone pressing the
 * test button during a real fire). When the test ends and the detector still reports smoke, `smoke`
 * rises then and `fire_alarm` follows: a fire is never masked for longer than the test itself.
 */

export const SMOKE_FLAGS = ['smoke', 'silenced', 'fault', 'battery_low', 'tamper', 'test'] as const;
export type SmokeFlag = (typeof SMOKE_FLAGS)[number];
export type SmokeState = Record<SmokeFlag, boolean>;

/** SPEC §2 smoke events as edges of the state flags; `heartbeat` is the event of a message without one. */
export const SMOKE_EDGES: EdgeTable = {
  smoke: { rose: 'fire_alarm', fell: 'fire_clear' },
  silenced: { rose: 'silenced' },
  fault: { rose: 'fault', fell: 'fault_clear' },
  ...BATTERY_EDGES,
  tamper: { rose: 'tamper', fell: 'tamper_clear' },
  test: { rose: 'self_test' },
};

/** Both smoke models can report everything SPEC §2 has for smoke. */
export const SMOKE_PRODUCES: Produces = {
  metrics: VOCABULARY.smoke.metrics,
  states: SMOKE_FLAGS,
  events: VOCABULARY.smoke.events,
};

/** The smoke flags among `flags` (a device's last known state, a sample's state…); a flag not there is false. */
export function smokeStateOf(flags: Readonly<Record<string, boolean | undefined>> | undefined): SmokeState {
  return {
    smoke: flags?.smoke ?? false,
    silenced: flags?.silenced ?? false,
    fault: flags?.fault ?? false,
    battery_low: flags?.battery_low ?? false,
    tamper: flags?.tamper ?? false,
    test: flags?.test ?? false,
  };
}

/** A reading's events: the edges from `previous` to `next` in vocabulary order, or `heartbeat` when there are none. */
export function smokeEvents(previous: DeviceState | undefined, next: SmokeState): string[] {
  const events = inVocabularyOrder(edgeEvents(previous, next, SMOKE_EDGES), VOCABULARY.smoke.events);
  return events.length > 0 ? events : ['heartbeat'];
}

/**
 * The flags a simulator's sample asks the device to report: its `state`, overridden by what its
 * events imply (`fire_alarm` → smoke, `tamper_clear` → no tamper…), since the events are what
 * this message is about. Flags neither names are false.
 */
export function smokeFlagsFromSample(sample: EncodeSample): SmokeState {
  return smokeStateOf({ ...sample.state, ...flagsFromEvents(sample.events ?? [], SMOKE_EDGES) });
}
