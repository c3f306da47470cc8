import type { DeviceRecord } from '../../devices/device-record.js';
import { ReadingSchema, isAlarmReading, type Reading, type ReadingDraft } from '../../devices/reading.js';
import { createLogThrottle } from '../log-throttle.js';
import { isStoreError } from '../store/errors.js';
import { isResendOf } from './resend.js';
import type { MqttUplink, Pipeline, PipelineDeps, RejectSource } from './types.js';

/**
 * The one path every reading takes (DESIGN.md): decode → validate → place → commit. MQTT and
 * serial sources differ only in how they get to a draft; from there on they share this code.
 * Fan-out (sinks, rules, local republish) listens to the store's commits, so nothing downstream
 * ever sees a reading a crash could still lose.
 */
export function createPipeline(deps: PipelineDeps): Pipeline {
  const { store, logger, clock } = deps;
  const previous = new Map<string, Readonly<Record<string, boolean>>>();
  // The state as last committed; `previous` runs ahead of it by the readings still being committed.
  const durable = new Map<string, Readonly<Record<string, boolean>>>();
  for (const s of store.loadDeviceStates()) {
    previous.set(s.deviceId, s.state);
    durable.set(s.deviceId, s.state);
  }

  const accepted: Record<string, number> = {};
  const rejected: Record<string, number> = {};
  let droppedOverLimit = 0;
  let duplicates = 0;
  const throttle = createLogThrottle(clock);

  function reject(
    source: RejectSource,
    reason: string,
    detail: string,
    opts: { deviceId?: string; payload?: Buffer; deadLetter?: boolean } = {},
  ): void {
    rejected[reason] = (rejected[reason] ?? 0) + 1;
    if (opts.deadLetter !== false) {
      store.deadLetter({
        source,
        reason,
        detail,
        ...(opts.deviceId !== undefined ? { deviceId: opts.deviceId } : {}),
        ...(opts.payload !== undefined ? { payload: opts.payload } : {}),
      });
    }
    // SPEC §3: logged once per device per minute, whatever the flood.
    const gate = throttle.allow(`${opts.deviceId ?? source}:${reason}`);
    if (gate.ok) logger.warn({ source, deviceId: opts.deviceId, reason, suppressed: gate.suppressed }, detail);
  }

  // The newest device time stored per device (loaded on the device's first reading after start).
  // A resend repeats a stored device time, so a reading newer than every stored one — the normal
  // case — cannot be a resend and skips the store lookup (~30 µs a reading, 14 % of the pipeline's
  // time at its ceiling: issue 7's profile). Retention can only make this too high: a lookup more.
  const newestStamped = new Map<string, number>();
  function mayBeResend(deviceId: string, ts: number): boolean {
    let newest = newestStamped.get(deviceId);
    if (newest === undefined) {
      newest = store.queryReadings({ deviceId, order: 'desc', limit: 1 })[0]?.reading.ts ?? Number.NEGATIVE_INFINITY;
      newestStamped.set(deviceId, newest);
    }
    return ts <= newest;
  }
  function noteStored(deviceId: string, ts: number): void {
    newestStamped.set(deviceId, Math.max(newestStamped.get(deviceId) ?? Number.NEGATIVE_INFINITY, ts));
  }

  function commit(draft: ReadingDraft, device: DeviceRecord, source: RejectSource): Promise<void> {
    const reading: Reading = { ...draft, place: device.place };
    // Codecs are pure and tested against this schema; a reading that still fails it is a codec
    // bug, and it is kept as a dead letter rather than stored half-valid.
    const valid = ReadingSchema.safeParse(reading);
    if (!valid.success) {
      logger.error({ deviceId: device.id, model: device.model, issues: valid.error.issues.length }, 'codec produced an invalid reading');
      reject(source, 'ING_ERR_INVALID_READING', valid.error.message, { deviceId: device.id });
      return Promise.resolve();
    }
    // Only a device-stamped reading can be recognised as a resend (resend.ts); serial readings never are.
    const stamped = source === 'mqtt' && reading.ts !== reading.receivedAt;
    if (stamped && mayBeResend(device.id, reading.ts) && isResendOf(reading, store.queryReadings({ deviceId: device.id, from: reading.ts, to: reading.ts, limit: 16 }))) {
      duplicates++;
      logger.debug({ deviceId: device.id, ts: reading.ts }, 'resent reading already stored');
      return Promise.resolve();
    }
    previous.set(device.id, { ...previous.get(device.id), ...reading.state });
    const key = `${reading.kind}/${reading.model}`;
    return store.append(reading).then(
      (seq) => {
        durable.set(device.id, { ...durable.get(device.id), ...reading.state });
        if (stamped) noteStored(device.id, reading.ts);
        accepted[key] = (accepted[key] ?? 0) + 1;
        const alarm = isAlarmReading(reading);
        if (alarm || (reading.events.length > 0 && reading.events[0] !== 'heartbeat')) {
          logger.info({ seq, deviceId: reading.deviceId, kind: reading.kind, model: reading.model, events: reading.events, grid: reading.place.grid }, alarm ? 'alarm reading' : 'reading');
        } else {
          logger.debug({ seq, deviceId: reading.deviceId, kind: reading.kind, model: reading.model, metrics: reading.metrics, state: reading.state }, 'reading');
        }
      },
      (err: unknown) => {
        // Not stored, so not what the device's resend may be compared with (SPEC §3.3): a resent
        // smoke:true would otherwise be a plain heartbeat, without its fire_alarm.
        const last = durable.get(device.id);
        if (last) previous.set(device.id, last);
        else previous.delete(device.id);
        // Disk full: plain telemetry is dropped (counted by the store) and acknowledged, so that the
        // device's connection, and an SOS queued behind it, stay up (docs/SPEC-NOTES.md "Disk full").
        if (isStoreError(err, 'STORE_ERR_FULL')) return;
        throw err;
      },
    );
  }

  return {
    acceptMqtt(msg: MqttUplink): Promise<void> {
      const { device } = msg;
      const model = deps.modelFor(device.model);
      if (model?.transport !== 'mqtt') {
        reject('mqtt', 'ING_ERR_MODEL', `device ${device.id} has no MQTT model (${device.model})`, { deviceId: device.id });
        return Promise.resolve();
      }
      const decoded = model.decode(msg.payload, { deviceId: device.id, receivedAt: msg.receivedAt, previous: previous.get(device.id) });
      if (!decoded.ok) {
        reject('mqtt', decoded.error.code, decoded.error.message, { deviceId: device.id, payload: msg.payload });
        return Promise.resolve();
      }
      // SPEC §3: over-limit telemetry is dropped, an alarm never is.
      if (msg.overLimit && !isAlarmReading(decoded.value)) {
        droppedOverLimit++;
        const gate = throttle.allow(`${device.id}:over_limit`);
        if (gate.ok) logger.warn({ deviceId: device.id, suppressed: gate.suppressed }, 'telemetry over the rate limit dropped');
        return Promise.resolve();
      }
      return commit(decoded.value, device, 'mqtt');
    },
    acceptDraft: (draft, device) => commit(draft, device, 'serial'),
    reject,
    previousState: (deviceId) => previous.get(deviceId),
    stats: () => ({ accepted: { ...accepted }, rejected: { ...rejected }, droppedOverLimit, duplicates }),
  };
}
