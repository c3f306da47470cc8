import type { Logger } from 'pino';
import type { DeviceRecord } from '../../devices/device-record.js';
import type { AuthThrottleOptions, AuthThrottleStats } from './auth-throttle.js';
import type { BrokerStats } from './counters.js';

/** The two things the broker asks of the device registry (SPEC §3, §11). */
export interface DeviceDirectory {
  /** The registered device with this id, or undefined. Called on every CONNECT and PUBLISH: keep it a map lookup. */
  get(id: string): DeviceRecord | undefined;
  /** Checks a presented secret against the device's stored scrypt hash. */
  verify(id: string, password: string): Promise<boolean>;
}

export interface OperatorCredentials {
  readonly username: string;
  readonly password: string;
}

export interface TlsListenerOptions {
  /** Defaults to `listen.host`. */
  readonly host?: string;
  readonly port: number;
  /** PEM, as a file path or its contents. */
  readonly cert: string | Buffer;
  readonly key: string | Buffer;
  readonly ca?: string | Buffer;
}

/** One device uplink (`dev/{id}/up`) that passed authentication, the ACL and the size check. */
export interface DeviceMessage {
  /** The registry's record at the moment the message arrived. */
  readonly device: DeviceRecord;
  readonly payload: Buffer;
  /** QoS 2 is treated as 1: the broker acknowledges it only after the handler resolves. */
  readonly qos: 0 | 1;
  /** Gateway clock when the broker received the PUBLISH, ms since the epoch. */
  readonly receivedAt: number;
  /**
   * The device is over its telemetry rate (SPEC §3). The broker cannot know whether the payload
   * carries an alarm before it is decoded, so it never drops on its own: the pipeline drops
   * over-limit telemetry and keeps alarms.
   */
  readonly overLimit: boolean;
  /** MQTT DUP flag: the device resends a QoS 1 message it has no PUBACK for (it may already be stored). */
  readonly dup: boolean;
}

export type PresenceReason = 'connect' | 'disconnect' | 'will' | 'status';

export interface DeviceBrokerDeps {
  readonly listen: { readonly host: string; readonly port: number };
  readonly tls?: TlsListenerOptions | undefined;
  /** SPEC §3: 16 KiB by default. */
  readonly maxPayloadBytes: number;
  /** Per-device telemetry rate (SPEC §3: 20 msg/s, burst 100). */
  readonly rateLimit?: { readonly perSecond: number; readonly burst: number } | undefined;
  readonly operators: readonly OperatorCredentials[];
  readonly devices: DeviceDirectory;
  /** True for models whose transport is MQTT; other devices (serial) may not connect. */
  isMqttModel(modelId: string): boolean;
  /**
   * The durability seam (DESIGN.md): for QoS 1 the PUBACK is written only after this resolves, so
   * resolve it after the reading is committed. A rejection means "not stored": the broker sends
   * no PUBACK and drops the connection, and the device resends on reconnect.
   */
  onDeviceMessage(msg: DeviceMessage): Promise<void>;
  /** Called on transitions only (never twice in a row with the same `online`). Must not throw; errors are logged. */
  onPresence(deviceId: string, online: boolean, at: number, reason: PresenceReason): void;
  readonly logger: Logger;
  readonly clock?: () => number;
  /** Credential brute-force limits (auth-throttle.ts); default AUTH_THROTTLE_DEFAULTS. */
  readonly authThrottle?: AuthThrottleOptions | undefined;
}

export interface PublishLocalOptions {
  readonly qos?: 0 | 1;
  readonly retain?: boolean;
}

export interface DeviceBroker {
  start(): Promise<void>;
  /** Closes listeners, connections and aedes. Devices are not announced offline: the gateway is going away, not them. */
  stop(): Promise<void>;
  /** A command on `dev/{id}/down` (QoS 1). Resolves once aedes has routed it. */
  publishDown(deviceId: string, payload: Buffer): Promise<void>;
  /** A message for local operator tools (`gridedge/readings/…`, `gridedge/incidents/…`). */
  publishLocal(topic: string, payload: Buffer | string, opts?: PublishLocalOptions): Promise<void>;
  stats(): BrokerStats & { readonly authThrottle: AuthThrottleStats };
  /**
   * An operator client is connected. The local republish is QoS 0 and never retained, so with no
   * operator connected nobody could receive it: the gateway skips serialising it (issue 7 profile).
   */
  hasLocalReaders(): boolean;
  /** Connected, authenticated clients (devices and operators). */
  clients(): number;
  /** The bound ports, readable after start() (useful with port 0). */
  ports(): { tcp: number; tls?: number };
}
