import { batteryLow, decodeJson, encodeJsonCommand, parseWire } from '../../codec-helpers.js';
import { ok, type Result } from '../../errors.js';
import type { DecodeContext, EncodeSample, MqttModel } from '../../model.js';
import { chooseTimestamp, type ReadingDraft } from '../../reading.js';
import { presentMetrics, sampleBatteryPct } from '../mqtt-common.js';
import { SMOKE_PRODUCES, smokeEvents, smokeFlagsFromSample, smokeStateOf, type SmokeState } from '../smoke-events.js';
import { SmokeJsonPayloadSchema, type SmokeJsonPayload } from './schema.js';

const ID = 'smoke-json';

/** The level a sample without any battery information is sent with: a healthy detector. */
const DEFAULT_BATTERY_PCT = 100;

function decode(payload: Uint8Array, ctx: DecodeContext): Result<ReadingDraft> {
  const json = decodeJson(payload);
  if (!json.ok) return json;
  const wire = parseWire(SmokeJsonPayloadSchema, json.value);
  if (!wire.ok) return wire;
  const p = wire.value;

  const test = p.test ?? false;
  const state: SmokeState = {
    // The self-test rule (smoke-events.ts): a test message leaves `smoke` as it was.
    smoke: test ? smokeStateOf(ctx.previous).smoke : p.smoke,
    silenced: p.silenced ?? false,
    fault: p.fault ?? false,
    battery_low: batteryLow(p.battery, ctx.previous?.battery_low),
    tamper: p.tamper ?? false,
    test,
  };
  return ok({
    deviceId: ctx.deviceId,
    model: ID,
    kind: 'smoke',
    ts: chooseTimestamp(p.ts, ctx.receivedAt),
    receivedAt: ctx.receivedAt,
    metrics: presentMetrics({ battery_pct: p.battery, rssi_dbm: p.rssi }),
    state,
    events: smokeEvents(ctx.previous, state),
  });
}

/**
 * The payload a detector would send for a sample. Its events only come back from `decode` against
 * the matching previous state (events are edges), its flags come back as given, except `smoke`
 * during a test (the self-test rule).
 */
function encode(sample: EncodeSample): Buffer {
  const flags = smokeFlagsFromSample(sample);
  const wire: SmokeJsonPayload = {
    ts: sample.ts,
    smoke: flags.smoke,
    battery: sampleBatteryPct(sample) ?? DEFAULT_BATTERY_PCT,
    rssi: sample.metrics?.rssi_dbm,
    tamper: flags.tamper,
    fault: flags.fault,
    silenced: flags.silenced,
    test: flags.test,
  };
  // JSON.stringify leaves out the fields that are undefined (ts, rssi).
  return Buffer.from(JSON.stringify(wire), 'utf8');
}

/** SPEC §3.3 `smoke-json`: a detector speaking native JSON over MQTT. */
export const model: MqttModel = {
  id: ID,
  kind: 'smoke',
  transport: 'mqtt',
  description: 'Smoke detector, native JSON over MQTT (SPEC §3.3)',
  // SPEC §6: device.offline after 1 h of silence, twice the heartbeat.
  heartbeatMs: 30 * 60 * 1000,
  produces: SMOKE_PRODUCES,
  decode,
  encode,
  encodeCommand: encodeJsonCommand,
};
