export { compileRule, describeNode, type CompiledNode, type CompiledRule } from './compile.js';
export { DURATION_HINT, formatDuration, parseDuration, parseHeartbeatMultiple } from './duration.js';
export { formatRuleIssue, isRuleError, RULE_ERRORS, RuleError, type RuleErrorCode, type RuleIssue } from './errors.js';
export {
  BUILTIN,
  builtinRulesPath,
  checkRuleFiles,
  checkRules,
  loadRules,
  readRuleSources,
  type CheckedRules,
  type FileSummary,
  type LoadedRules,
  type LoadOptions,
  type RuleSource,
} from './load.js';
export { ConditionSchema, OPS, RuleFileSchema, RuleSchema, type ConditionDef, type Op, type RuleDefinition, type SetpointRef, type ValueDef } from './schema.js';
