import type { Result } from './errors.js';
import type { ReadingDraft } from './reading.js';
import type { Kind } from './vocabulary.js';

export type Transport = 'mqtt' | 'modbus-rtu' | 'rf-bridge';

/** A device's last known state flags, as the store keeps them (the `state` of its last reading). */
export type DeviceState = Readonly<Record<string, boolean>>;

export interface DecodeContext {
  /** The registered device this input belongs to (the registry resolved it). */
  readonly deviceId: string;
  /** Gateway clock when the bytes arrived, ms since the epoch. */
  readonly receivedAt: number;
  /**
   * The device's last known state flags. Events derive from changes against it (SPEC §3.3): after
   * a restart this is the stored state, not "all clear". Undefined for a device never seen.
   */
  readonly previous?: DeviceState | undefined;
}

/** Commands the gateway sends on `dev/{id}/down` (SPEC §3.3). */
export type DownlinkCommand =
  | { readonly cmd: 'ack'; readonly incident: string; readonly text?: string }
  | { readonly cmd: 'mute' }
  | { readonly cmd: 'self_test' };

/**
 * What a simulator (or a test) asks an encoder to put on the wire: the parts of a reading the
 * device itself would report. Each model encodes what its wire format can carry.
 */
export interface EncodeSample {
  readonly ts?: number;
  readonly metrics?: Readonly<Record<string, number>>;
  readonly state?: Readonly<Record<string, boolean>>;
  readonly events?: readonly string[];
  readonly service?: string;
}

/** What a model can produce: its subset of the kind's vocabulary. The contract test checks the fixtures cover all of it. */
export interface Produces {
  readonly metrics: readonly string[];
  readonly states: readonly string[];
  readonly events: readonly string[];
}

interface ModelBase {
  readonly id: string;
  readonly kind: Kind;
  readonly transport: Transport;
  readonly description: string;
  /**
   * How often a healthy device reports, for `silentFor: 2x` (SPEC §6). pager-rf reports only on
   * presses, so its liveness is the monthly test press instead.
   */
  readonly heartbeatMs: number;
  readonly produces: Produces;
}

/** MQTT models: the payload of `dev/{id}/up` in, a payload out (SPEC §3.3). */
export interface MqttModel extends ModelBase {
  readonly transport: 'mqtt';
  decode(payload: Uint8Array, ctx: DecodeContext): Result<ReadingDraft>;
  encode(sample: EncodeSample): Buffer;
  encodeCommand(cmd: DownlinkCommand): Buffer;
}

export interface ModbusContext extends DecodeContext {
  /** The slave address polled (1–247). */
  readonly address: number;
}

/** Modbus RTU meters: the whole FC03 response frame in (CRC included), register values out for simulators. */
export interface ModbusModel extends ModelBase {
  readonly transport: 'modbus-rtu';
  /** First register and count of the one poll (SPEC §4.2: 0x0001, 29). */
  readonly poll: { readonly start: number; readonly count: number };
  decode(frame: Uint8Array, ctx: ModbusContext): Result<ReadingDraft>;
  /** Register values for `poll.start … poll.start + poll.count - 1`, for the slave simulator. */
  encodeRegisters(sample: EncodeSample): number[];
}

/** One press of an RF pager after repeat folding (SPEC §4.3). */
export interface RfPress {
  /** 20-bit EV1527 id, 5 upper-case hex digits. */
  readonly id: string;
  /** 4-bit key code. */
  readonly key: number;
  /** How many matching words were heard for this press. */
  readonly words: number;
  /** Gateway time of the first word. */
  readonly at: number;
}

export interface RfModel extends ModelBase {
  readonly transport: 'rf-bridge';
  decode(press: RfPress, ctx: DecodeContext): Result<ReadingDraft>;
  /** The bytes a bridge sends for one word of this press (the emitter repeats it). */
  encodeFrame(id: string, key: number): Buffer;
  /** The key a sample's first event maps to. */
  keyFor(sample: EncodeSample): number;
}

export type Model = MqttModel | ModbusModel | RfModel;
