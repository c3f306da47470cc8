export {
  createRuleEngine,
  type CommittedReading,
  type DeviceLastSeen,
  type RuleEngine,
  type RuleEngineDeps,
  type RuleEngineStats,
  type RuleLogger,
  type RuleState,
} from './engine.js';
export { DeadlineQueue } from './deadlines.js';
