import { batteryLow, decodeJson, encodeJsonCommand, parseWire } from '../../codec-helpers.js';
import { fail, ok, type Result } from '../../errors.js';
import type { DecodeContext, EncodeSample, MqttModel } from '../../model.js';
import { chooseTimestamp, type ReadingDraft } from '../../reading.js';
import { presentMetrics, sampleBatteryPct } from '../mqtt-common.js';
import { SMOKE_PRODUCES, smokeEvents, smokeStateOf, type SmokeState } from '../smoke-events.js';
import { SmokeCtwPayloadSchema, type SmokeCtwPayload } from './schema.js';

const ID = 'smoke-ctw';

/** Flags the status does not name carry forward from the last known state, except `test` (below). */
type StatusEffect = Partial<SmokeState>;

/**
 * SPEC §3.3 Alarm_Status codes and the flags each one sets.
 * - `test` is true only in a 14 message: a self-test is a moment, not a condition (nothing would
 *   ever clear it otherwise, and each later test would give no `self_test`).
 * - 14 leaves `smoke` alone, which is the self-test rule of smoke-events.ts: no fire_alarm, no fire_clear.
 * - 2 leaves `smoke` alone too: a silenced detector is still in alarm until 7.
 * - 4 forces `battery_low` whatever Battery_Level says; otherwise it follows the level with hysteresis.
 * - 12 is the periodic "online" report: nothing changes, so its event is `heartbeat`.
 */
const STATUS_EFFECTS: ReadonlyMap<number, StatusEffect> = new Map<number, StatusEffect>([
  [1, { smoke: true }],
  [2, { silenced: true }],
  [4, { battery_low: true }],
  [5, { fault: true }],
  [7, { smoke: false, silenced: false, fault: false }],
  [10, { tamper: true }],
  [11, { tamper: false }],
  [12, {}],
  [14, { test: true }],
]);

const ONLINE = 12;
const NORMAL = 7;

function decode(payload: Uint8Array, ctx: DecodeContext): Result<ReadingDraft> {
  const json = decodeJson(payload);
  if (!json.ok) return json;
  const wire = parseWire(SmokeCtwPayloadSchema, json.value);
  if (!wire.ok) return wire;
  const { timestamp } = wire.value;
  const { Alarm_Status: status, Battery_Level: battery, RSRP: rsrp } = wire.value.payload.serviceData;

  const effect = STATUS_EFFECTS.get(status);
  if (effect === undefined) {
    return fail('DEV_ERR_UNKNOWN_CODE', `Alarm_Status ${status}`, ['payload', 'serviceData', 'Alarm_Status']);
  }
  const before = smokeStateOf(ctx.previous);
  const state: SmokeState = {
    smoke: effect.smoke ?? before.smoke,
    silenced: effect.silenced ?? before.silenced,
    fault: effect.fault ?? before.fault,
    battery_low: effect.battery_low ?? batteryLow(battery, ctx.previous?.battery_low),
    tamper: effect.tamper ?? before.tamper,
    test: effect.test ?? false,
  };
  return ok({
    deviceId: ctx.deviceId,
    model: ID,
    kind: 'smoke',
    ts: chooseTimestamp(timestamp, ctx.receivedAt),
    receivedAt: ctx.receivedAt,
    metrics: presentMetrics({ battery_pct: battery, rssi_dbm: rsrp }),
    state,
    events: smokeEvents(ctx.previous, state),
  });
}

/** The status a detector sends to report each event; `battery_ok` has none, an online report with a good level says it. */
const EVENT_STATUS: Readonly<Record<string, number>> = {
  fire_alarm: 1,
  fire_clear: NORMAL,
  silenced: 2,
  fault: 5,
  fault_clear: NORMAL,
  battery_low: 4,
  battery_ok: ONLINE,
  tamper: 10,
  tamper_clear: 11,
  self_test: 14,
  heartbeat: ONLINE,
};

/**
 * One message carries one status: the sample's first event that has one; without such an event, the
 * most urgent of its state flags (a state with none set is "normal", 7); without events or state, 12.
 */
function statusFor(sample: EncodeSample): number {
  for (const event of sample.events ?? []) {
    const status = EVENT_STATUS[event];
    if (status !== undefined) return status;
  }
  const s = sample.state;
  if (s === undefined || Object.keys(s).length === 0) return ONLINE;
  if (s.test) return 14;
  if (s.smoke) return s.silenced ? 2 : 1;
  if (s.fault) return 5;
  if (s.tamper) return 10;
  if (s.battery_low) return 4;
  return NORMAL;
}

/** The level a sample without any battery information is sent with: a healthy detector. */
const DEFAULT_BATTERY_PCT = 100;

/**
 * The platform message for a sample. Without `ts` the timestamp is 0, a clock that never synced,
 * which decodes to `receivedAt` — as a smoke-json payload without `ts` does.
 */
function encode(sample: EncodeSample): Buffer {
  const wire: SmokeCtwPayload = {
    timestamp: sample.ts ?? 0,
    payload: {
      serviceData: {
        Alarm_Status: statusFor(sample),
        Battery_Level: sampleBatteryPct(sample) ?? DEFAULT_BATTERY_PCT,
        RSRP: sample.metrics?.rssi_dbm,
      },
    },
  };
  return Buffer.from(JSON.stringify(wire), 'utf8');
}

/** SPEC §3.3 `smoke-ctw`: an NB-IoT detector reporting Alarm_Status codes through a CTWing-style platform. */
export const model: MqttModel = {
  id: ID,
  kind: 'smoke',
  transport: 'mqtt',
  description: 'Smoke detector, NB-IoT platform JSON with Alarm_Status codes (SPEC §3.3)',
  // SPEC §6: device.offline after 1 h of silence, twice the heartbeat.
  heartbeatMs: 30 * 60 * 1000,
  produces: SMOKE_PRODUCES,
  decode,
  encode,
  encodeCommand: encodeJsonCommand,
};
