import { batteryLow, decodeJson, encodeJsonCommand, parseWire } from '../../codec-helpers.js';
import { ok, type Result } from '../../errors.js';
import type { DecodeContext, EncodeSample, MqttModel } from '../../model.js';
import { chooseTimestamp, type ReadingDraft } from '../../reading.js';
import { VOCABULARY } from '../../vocabulary.js';
import { BATTERY_EDGES, edgeEvents, inVocabularyOrder, presentMetrics, sampleBatteryPct } from '../mqtt-common.js';
import { PagerJsonPayloadSchema, isPagerWireEvent, type PagerJsonPayload } from './schema.js';

const ID = 'pager-json';

/**
 * A pager's events are presses, not state: every message gives its own event (a second `sos` is a
 * second press), plus `battery_low` / `battery_ok` when the battery flag changes. A message without
 * `battery` leaves `battery_low` as it was (an SOS that does not report the battery must not
 * clear a low-battery incident).
 */
function decode(payload: Uint8Array, ctx: DecodeContext): Result<ReadingDraft> {
  const json = decodeJson(payload);
  if (!json.ok) return json;
  const wire = parseWire(PagerJsonPayloadSchema, json.value);
  if (!wire.ok) return wire;
  const p = wire.value;

  const wasLow = ctx.previous?.battery_low;
  const state = { battery_low: p.battery === undefined ? (wasLow ?? false) : batteryLow(p.battery, wasLow) };
  const events = inVocabularyOrder([p.event, ...edgeEvents(ctx.previous, state, BATTERY_EDGES)], VOCABULARY.pager.events);
  return ok({
    deviceId: ctx.deviceId,
    model: ID,
    kind: 'pager',
    ts: chooseTimestamp(p.ts, ctx.receivedAt),
    receivedAt: ctx.receivedAt,
    metrics: presentMetrics({ battery_pct: p.battery }),
    state,
    events,
    ...(p.event === 'service_call' && p.service !== undefined ? { service: p.service } : {}),
  });
}

/**
 * The message a pager sends for a sample: its first event the pager can send (`heartbeat` when it
 * has none: battery events alone are a heartbeat with a battery level), `service` with a service
 * call, `battery` when the sample says anything about it.
 */
function encode(sample: EncodeSample): Buffer {
  const event = sample.events?.find(isPagerWireEvent) ?? 'heartbeat';
  // Built loosely: a simulator may ask for a service the schema refuses, to test the gateway.
  const wire: Record<keyof PagerJsonPayload | 'service', unknown> = {
    ts: sample.ts,
    event,
    service: event === 'service_call' ? sample.service : undefined,
    battery: sampleBatteryPct(sample),
  };
  return Buffer.from(JSON.stringify(wire), 'utf8');
}

/** SPEC §3.3 `pager-json`: a 4G alarm pager for elderly residents, JSON over MQTT. */
export const model: MqttModel = {
  id: ID,
  kind: 'pager',
  transport: 'mqtt',
  description: 'Alarm pager, 4G JSON over MQTT (SPEC §3.3)',
  // SPEC §6: device.offline after 15 min of silence, twice the heartbeat.
  heartbeatMs: 7.5 * 60 * 1000,
  produces: {
    metrics: ['battery_pct'],
    states: ['battery_low'],
    events: ['sos', 'service_call', 'family_call', 'fire_call', 'cancel', 'fall', 'battery_low', 'battery_ok', 'test', 'heartbeat'],
  },
  decode,
  encode,
  encodeCommand: encodeJsonCommand,
};
