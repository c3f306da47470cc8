/**
 * The error catalogue of the rules (STYLE.md: one catalogue per folder, stable codes). Rule
 * files are validated once at load; every problem is reported, each naming the file, the rule id
 * (or its index when it has no usable id), the field path inside the rule and, when known, the
 * line (SPEC §6).
 */
export const RULE_ERRORS = {
  RULE_ERR_READ: 'cannot read the rule file',
  RULE_ERR_YAML: 'the rule file is not valid YAML',
  RULE_ERR_SCHEMA: 'a rule does not have the shape of a rule',
  RULE_ERR_COMPILE: 'a rule names something that does not exist or a condition that cannot be evaluated',
  RULE_ERR_DUPLICATE: 'two rules have the same id',
  RULE_ERR_OVERRIDE: 'a rule says override but there is nothing to override',
  RULE_ERR_SIGNAL: 'the incident manager threw on a signal; it is kept and delivered again',
} as const;

export type RuleErrorCode = keyof typeof RULE_ERRORS;

export interface RuleIssue {
  readonly code: RuleErrorCode;
  /** The file as the operator should see it (`rules/local.yaml`, or `builtin`). */
  readonly file: string;
  /** The rule's id, when it has a usable one. */
  readonly ruleId?: string;
  /** The rule's index in the file's `rules` list, used when it has no usable id. */
  readonly ruleIndex?: number;
  /** Field path inside the rule (`when.all[1].op`), or inside the file when there is no rule. */
  readonly path?: string;
  readonly line?: number;
  readonly message: string;
}

/**
 * `local.yaml: rule electrical.leakage: when.op: must be one of > >= < <= == != (line 12)`.
 * The line goes last so that the file / rule / path prefix reads the same with or without it.
 */
export function formatRuleIssue(issue: RuleIssue): string {
  const parts = [issue.file];
  if (issue.ruleId !== undefined) parts.push(`rule ${issue.ruleId}`);
  else if (issue.ruleIndex !== undefined) parts.push(`rules[${issue.ruleIndex}]`);
  if (issue.path !== undefined && issue.path !== '') parts.push(issue.path);
  const line = issue.line === undefined ? '' : ` (line ${issue.line})`;
  return `${parts.join(': ')}: ${issue.message}${line}`;
}

/** Thrown by `loadRules`: carries every issue found in every file, not just the first. */
export class RuleError extends Error {
  override readonly name = 'RuleError';
  readonly code: RuleErrorCode;
  readonly issues: readonly RuleIssue[];

  constructor(issues: readonly RuleIssue[], options?: { cause?: unknown }) {
    const first = issues[0];
    if (!first) throw new TypeError('RuleError needs at least one issue');
    super(issues.map(formatRuleIssue).join('\n'), options);
    this.code = first.code;
    this.issues = issues;
  }
}

export function isRuleError(err: unknown): err is RuleError {
  return err instanceof RuleError;
}

/** `rules[0].when.all[1].op` from zod's path segments. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else out += out === '' ? String(seg) : `.${String(seg)}`;
  }
  return out;
}
