/** The durable local store: see open-store.ts for the `Store` contract. */
export { openStore, type Store } from './open-store.js';
export type { OpenStoreOptions, StoreTuning } from './options.js';
export { STORE_ERRORS, StoreError, isStoreError, type StoreErrorCode } from './errors.js';
export { SCHEMA_VERSION } from './schema.js';
export type {
  CommitListener,
  ConsumerInfo,
  DeadLetter,
  DeadLetterInput,
  DeadLetterSource,
  DeviceState,
  PruneOptions,
  ReadingQuery,
  RegisterConsumerOptions,
  StoreLogger,
  StoreStats,
  StoredReading,
} from './types.js';
export { readDeviceStates } from './read-only.js';
