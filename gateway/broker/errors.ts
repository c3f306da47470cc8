/** The broker's error catalogue: what start(), publishDown() and publishLocal() can throw. */
import { codedError } from '../../devices/coded-error.js';

export const BROKER_ERRORS = {
  BROKER_ERR_STATE: 'the broker is not in a state that allows this',
  BROKER_ERR_LISTEN: 'cannot listen',
  BROKER_ERR_TLS: 'cannot set up the TLS listener',
  BROKER_ERR_PUBLISH: 'aedes could not publish',
  BROKER_ERR_CONFIG: 'invalid broker options',
} as const;

export type BrokerErrorCode = keyof typeof BROKER_ERRORS;

export class BrokerError extends codedError('BrokerError', BROKER_ERRORS) {}

/** CONNACK return codes of MQTT 3.1.1 §3.2.2.3 that the broker sends. */
export const CONNACK = {
  SERVER_UNAVAILABLE: 3,
  BAD_USERNAME_OR_PASSWORD: 4,
  NOT_AUTHORIZED: 5,
} as const;
