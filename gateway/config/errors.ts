/**
 * The error catalogue of the gateway's configuration: `gridedge.yaml` (CFG_*) and the device
 * registry CSV it points at (REG_*). Both are read once at start-up, and both fail the same way:
 * one error that lists every problem found, each naming the file, the field path (or CSV line)
 * and what is wrong (STYLE.md: config validated once; SPEC §9: exit code 2).
 */
export const CONFIG_ERRORS = {
  CFG_ERR_READ: 'cannot read the config file',
  CFG_ERR_YAML: 'the config file is not valid YAML',
  CFG_ERR_INVALID: 'the config is invalid',
  CFG_ERR_ENV: 'an environment variable named in the config is not set',
  REG_ERR_READ: 'cannot read the device registry',
  REG_ERR_CSV: 'the device registry is not valid CSV',
  REG_ERR_HEADER: 'the device registry header is wrong',
  REG_ERR_ROW: 'a device registry row is invalid',
  REG_ERR_INLINE: 'the devices are listed inline in the config, not in a CSV registry file',
  REG_ERR_WRITE: 'cannot write the device registry',
} as const;

export type ConfigErrorCode = keyof typeof CONFIG_ERRORS;

/**
 * One problem, located. `path` is a field path (`site.grids[0].code`) for YAML and for inline
 * device rows; `line` and `field` locate a CSV cell. Messages never contain secrets, tokens or
 * residents' data: they describe the value, they do not echo it.
 */
export interface ConfigIssue {
  readonly code: ConfigErrorCode;
  readonly file: string;
  readonly path?: string;
  readonly line?: number;
  /** CSV column. */
  readonly field?: string;
  /** The device id of a CSV row, when it has one, to help find the row. */
  readonly deviceId?: string;
  readonly message: string;
}

/** `gridedge.yaml: site.grids[0].code: …`, `devices.csv:7 (SMK-0003): grid: …`. */
export function formatIssue(issue: ConfigIssue): string {
  let where = issue.file;
  if (issue.line !== undefined) where += `:${issue.line}`;
  if (issue.deviceId !== undefined) where += ` (${issue.deviceId})`;
  const field = issue.path ?? issue.field;
  return field === undefined || field === '' ? `${where}: ${issue.message}` : `${where}: ${field}: ${issue.message}`;
}

// One description of fs errors for config, registry and rule files; rules/ may not import gateway/.
export { describeFsError } from '../../rules/dsl/load.js';

/** Thrown by the config loader; carries every issue found, not just the first. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  readonly code: ConfigErrorCode;
  readonly issues: readonly ConfigIssue[];

  constructor(issues: readonly ConfigIssue[], options?: { cause?: unknown }) {
    const first = issues[0];
    if (!first) throw new TypeError('ConfigError needs at least one issue');
    super(issues.map(formatIssue).join('\n'), options);
    this.code = first.code;
    this.issues = issues;
  }
}

export function isConfigError(err: unknown): err is ConfigError {
  return err instanceof ConfigError;
}
