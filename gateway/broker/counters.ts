/**
 * Everything the broker refuses or flags, by reason (SPEC §3: "counted by reason"). One list, so
 * that stats() always shows every reason (zeros included) and a typo is a type error.
 */
export const REFUSAL_REASONS = [
  /** CONNACK 4: wrong secret for a known device, or no password. */
  'auth_bad_secret',
  /** CONNACK 5: username is no registered device and no operator. */
  'auth_unknown_device',
  /** CONNACK 5: client id ≠ username for a device. */
  'auth_client_id_mismatch',
  /** CONNACK 5: the device's model does not speak MQTT (a serial device). */
  'auth_not_mqtt_model',
  /** CONNACK 5: an MQTT device registered without a secret hash. */
  'auth_no_secret',
  /** CONNACK 4: an operator with a wrong password. */
  'auth_operator_bad_password',
  /** CONNACK 5: an operator using a registered device's id as its client id (it would take the device's session over). */
  'auth_operator_client_id',
  /** CONNACK 5: the client's address is locked out after too many failed CONNECTs (auth-throttle.ts); nothing was checked. */
  'auth_ip_locked',
  /** CONNACK 5: the device id is rate-limited after wrong secrets and its verification slot was taken; no scrypt ran. */
  'auth_device_throttled',
  /** CONNACK 3: verifying the secret failed (not a wrong secret: an internal error). */
  'auth_error',
  /** A PUBLISH outside the client's ACL: dropped, the connection stays. */
  'acl_publish',
  /** A SUBSCRIBE outside the client's ACL: granted 0x80. */
  'acl_subscribe',
  /** A payload over maxPayloadBytes: dropped. */
  'too_large',
  /** A packet far over the limit: the connection is closed before it is buffered. */
  'packet_too_large',
  /** Marked overLimit (not dropped by the broker; the pipeline decides). */
  'over_limit',
  /** onDeviceMessage rejected: no PUBACK, the connection is closed so that the device resends. */
  'handler_error',
  /** `dev/{id}/status` with a payload other than `online` / `offline`. */
  'status_invalid',
  /** A connected device that is no longer in the registry published: dropped. */
  'unknown_device',
  /** A will on another topic than the device's own status, or not `offline`: not published. */
  'will_refused',
  /** The will of a session that another connection of the same device took over: not published. */
  'will_superseded',
] as const;

export type RefusalReason = (typeof REFUSAL_REASONS)[number];

export interface BrokerStats {
  readonly connected: number;
  /** Accepted device messages by kind. */
  readonly accepted: { readonly up_qos0: number; readonly up_qos1: number; readonly status: number };
  readonly refused: Readonly<Record<RefusalReason, number>>;
}

export interface Counters {
  refuse(reason: RefusalReason): void;
  accept(kind: keyof BrokerStats['accepted']): void;
  snapshot(connected: number): BrokerStats;
}

export function createCounters(): Counters {
  const refused = Object.fromEntries(REFUSAL_REASONS.map((r) => [r, 0])) as Record<RefusalReason, number>;
  const accepted = { up_qos0: 0, up_qos1: 0, status: 0 };
  return {
    refuse(reason) {
      refused[reason]++;
    },
    accept(kind) {
      accepted[kind]++;
    },
    snapshot(connected) {
      return Object.freeze({ connected, accepted: Object.freeze({ ...accepted }), refused: Object.freeze({ ...refused }) });
    },
  };
}
