import type { DeviceRecord } from '../../devices/device-record.js';
import type { Model } from '../../devices/model.js';
import type { Reading, ReadingDraft } from '../../devices/reading.js';
import type { DeadLetterInput, DeviceState, ReadingQuery, StoreLogger, StoredReading } from '../store/index.js';

/** What the pipeline needs of the store: commit readings, keep rejects, and the state at start. */
export interface PipelineStore {
  append(reading: Reading): Promise<number>;
  deadLetter(letter: DeadLetterInput): void;
  loadDeviceStates(): DeviceState[];
  queryReadings(query: ReadingQuery): StoredReading[];
}

export interface PipelineDeps {
  readonly store: PipelineStore;
  /** The catalogue: a device's model by id. */
  modelFor(modelId: string): Model | undefined;
  readonly logger: StoreLogger & { debug(obj: object, msg?: string): void };
  readonly clock: () => number;
}

/** One MQTT uplink, as the broker hands it over (after auth, ACL and the size check). */
export interface MqttUplink {
  readonly device: DeviceRecord;
  readonly payload: Buffer;
  readonly qos: 0 | 1;
  readonly receivedAt: number;
  /** Over the device's telemetry rate: dropped unless it carries an alarm (SPEC §3). */
  readonly overLimit: boolean;
}

export type RejectSource = 'mqtt' | 'serial';

export interface PipelineStats {
  /** Committed readings by kind and model. */
  readonly accepted: Readonly<Record<string, number>>;
  /** Rejected input by reason code. */
  readonly rejected: Readonly<Record<string, number>>;
  /** Telemetry dropped by the per-device rate limit. */
  readonly droppedOverLimit: number;
  /** Resends of readings already stored (a QoS 1 publish whose PUBACK the device never got). */
  readonly duplicates: number;
}

export interface Pipeline {
  /**
   * SPEC §3: resolves once the reading is committed, or once a payload that can never become a
   * reading has been dead-lettered (a resend would fail the same way). Rejects only when the
   * store could not commit, so the broker withholds the PUBACK and the device resends.
   */
  acceptMqtt(msg: MqttUplink): Promise<void>;
  /** A reading a serial source decoded (Modbus poll, RF press, comm status). Same contract. */
  acceptDraft(draft: ReadingDraft, device: DeviceRecord): Promise<void>;
  /** Input a source could not turn into a reading: counted by reason, dead-lettered, logged once a minute per device. */
  reject(source: RejectSource, reason: string, detail: string, opts?: { deviceId?: string; payload?: Buffer; deadLetter?: boolean }): void;
  /** The device's last known state flags: what its codec compares against (SPEC §3.3). */
  previousState(deviceId: string): Readonly<Record<string, boolean>> | undefined;
  stats(): PipelineStats;
}
