export * from './errors.js';
export * from './schema.js';
export * from './redact.js';
export * from './store.js';
export * from './manager.js';
