export { createDeviceBroker } from './device-broker.js';
export { REFUSAL_REASONS, type BrokerStats, type RefusalReason } from './counters.js';
export { BROKER_ERRORS, BrokerError, type BrokerErrorCode } from './errors.js';
export type {
  DeviceBroker,
  DeviceBrokerDeps,
  DeviceDirectory,
  DeviceMessage,
  OperatorCredentials,
  PresenceReason,
  PublishLocalOptions,
  TlsListenerOptions,
} from './types.js';
