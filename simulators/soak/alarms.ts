import type { EncodeSample } from '../../devices/model.js';
import { heartbeatSample, type LoadDevice } from '../load.js';

/*
 * Alarms mixed into the soak's telemetry at random moments: a smoke detector's fire (smoke-json
 * and smoke-ctw), a pager's sos or fall (pager-json). The schedule is a seeded PRNG, so a failing
 * run can be replayed with its seed.
 *
 * A smoke detector's fire_alarm is an edge of its smoke state against the last stored reading
 * (devices/models/smoke-events.ts), and a smoke-ctw heartbeat (Alarm_Status 12, "online") leaves
 * the state as it was: so two messages after each fire the detector reports fire_clear, an
 * alarm is never a device's first message in a run, and two alarms of one device are a few
 * messages apart. Pager events are explicit.
 */

/** The rule of the default pack each alarm event raises (rules/default-rules.yaml). */
export const RULE_OF_EVENT: Readonly<Record<string, string>> = { fire_alarm: 'fire', sos: 'sos', fall: 'fall' };
/** Heartbeats between two alarms of one device, at least. */
const MIN_GAP = 4;
/**
 * Chance that a device's second message in a run is an alarm (a device back after the outage
 * reporting what happened): so that alarms are among the first PUBACKs even when a loaded
 * machine acknowledges only a few dozen messages before the kill.
 */
const EARLY_SHARE = 0.2;
/** A smoke detector's fire clears this many messages after it started. */
const CLEAR_AFTER = 2;


export interface AlarmSchedule {
  /** The load generator's `sample`: a heartbeat, or now and then an alarm. */
  readonly sample: (device: LoadDevice, seq: number) => EncodeSample;
  /** The alarm event of a device's message `seq` in this load run, if it was one. */
  readonly alarmOf: (deviceId: string, seq: number) => string | undefined;
}

/** One schedule per load run (the load generator numbers each device's messages from 0 per run). */
export function alarmSchedule(random: () => number, share: number): AlarmSchedule {
  const alarms = new Map<string, string>();
  const lastAlarm = new Map<string, number>();
  return {
    sample: (device, seq) => {
      const base = heartbeatSample(device, seq);
      if (device.model.kind === 'smoke' && lastAlarm.get(device.id) === seq - CLEAR_AFTER) return { ...base, events: ['fire_clear'] };
      const since = seq - (lastAlarm.get(device.id) ?? -MIN_GAP);
      if (seq === 0 || since < MIN_GAP || random() >= (seq === 1 ? EARLY_SHARE : share)) return base;
      const event = device.model.kind === 'smoke' ? 'fire_alarm' : random() < 0.5 ? 'sos' : 'fall';
      alarms.set(`${device.id}#${seq}`, event);
      lastAlarm.set(device.id, seq);
      return { ...base, events: [event] };
    },
    alarmOf: (deviceId, seq) => alarms.get(`${deviceId}#${seq}`),
  };
}
