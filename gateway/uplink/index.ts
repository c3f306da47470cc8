export * from './commands.js';
export * from './errors.js';
export * from './uplink.js';
