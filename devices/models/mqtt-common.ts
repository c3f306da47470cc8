import { z } from 'zod';
import { BATTERY_LOW_PCT, stateChanges } from '../codec-helpers.js';
import type { DeviceState, EncodeSample } from '../model.js';

/*
 * What the three MQTT JSON models (smoke-json, smoke-ctw, pager-json) share: the wire fields they
 * have in common, events from state edges, and the battery a simulator's sample implies.
 *
 * Wire objects are plain `z.object`s, which strip keys they do not name: vendors and IoT platforms
 * add their own (IMEI, firmware, CTWing's productId/messageType…), and refusing those would dead-
 * letter alarms for no safety gain. The fields we do read are checked strictly: types exact
 * (`"85"` and `null` are not numbers, `1` is not a boolean), numbers finite and in range.
 */

/**
 * Device clock, ms since the epoch. Any finite number: a wrong clock is not a wrong payload, and
 * `chooseTimestamp` replaces a time outside ±24 h with `receivedAt` (SPEC §2) — an alarm from a
 * detector whose clock never synced must still arrive. Non-finite values (JSON `1e400` parses to
 * Infinity) are refused by `z.number()`.
 */
export const DeviceTimeSchema = z.number();

/** Battery, percent. Fractions are accepted: some vendors derive it from a voltage. */
export const BatteryPctSchema = z.number().min(0).max(100);

/**
 * Received signal, dBm (RSSI or NB-IoT RSRP). 3GPP TS 36.133 reports RSRP down to −156 dBm and no
 * receiver hears anything above 0 dBm; outside that the field is not in dBm, so it is refused
 * rather than stored as a wrong number.
 */
export const SignalDbmSchema = z.number().min(-160).max(0);

/** For each state flag, the event of its rising edge and of its falling edge, where there is one. */
export type EdgeTable = Readonly<Record<string, { readonly rose?: string; readonly fell?: string }>>;

/** SPEC §2 + docs/SPEC-NOTES.md: `battery_low` rises with `battery_low` and clears with `battery_ok`. */
export const BATTERY_EDGES: EdgeTable = { battery_low: { rose: 'battery_low', fell: 'battery_ok' } };

/** The events of the flags that changed from `previous` to `next` (a flag missing from `previous` is false). */
export function edgeEvents(previous: DeviceState | undefined, next: DeviceState, edges: EdgeTable): string[] {
  const { rose, fell } = stateChanges(previous, next);
  return [...rose.map((flag) => edges[flag]?.rose), ...fell.map((flag) => edges[flag]?.fell)].filter(
    (event): event is string => event !== undefined,
  );
}

/** Events without duplicates, sorted as in the kind's vocabulary, so a reading's events are deterministic. */
export function inVocabularyOrder(events: Iterable<string>, vocabulary: readonly string[]): string[] {
  return [...new Set(events)].sort((a, b) => vocabulary.indexOf(a) - vocabulary.indexOf(b));
}

/** The inverse of an edge table, for encoders: the flag values a list of events implies (later events win). */
export function flagsFromEvents(events: readonly string[], edges: EdgeTable): Record<string, boolean> {
  const flags: Record<string, boolean> = {};
  for (const event of events) {
    for (const [flag, edge] of Object.entries(edges)) {
      if (edge.rose === event) flags[flag] = true;
      if (edge.fell === event) flags[flag] = false;
    }
  }
  return flags;
}

/** A level well inside each side of the battery hysteresis band (devices/codec-helpers.ts). */
const SAMPLE_LOW_PCT = BATTERY_LOW_PCT / 2;
const SAMPLE_FULL_PCT = 100;

/**
 * The battery level an encoder puts on the wire for a sample: its `battery_pct` metric when it has
 * one (metrics are data, flags are derived from them), else a level on the side its battery events
 * or `battery_low` flag say, else undefined.
 */
export function sampleBatteryPct(sample: EncodeSample): number | undefined {
  const pct = sample.metrics?.battery_pct;
  if (pct !== undefined) return pct;
  const low = flagsFromEvents(sample.events ?? [], BATTERY_EDGES).battery_low ?? sample.state?.battery_low;
  if (low === undefined) return undefined;
  return low ? SAMPLE_LOW_PCT : SAMPLE_FULL_PCT;
}

/** A reading's metrics without the ones the payload did not carry. */
export function presentMetrics(metrics: Readonly<Record<string, number | undefined>>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, value] of Object.entries(metrics)) if (value !== undefined) out[name] = value;
  return out;
}
