import { isAbsolute, relative, resolve } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import type { Env } from '../config/env.js';
import { loadConfig } from '../config/load.js';
import type { GatewayConfig } from '../config/schema.js';
import { formatIssue, type ConfigIssue } from '../config/errors.js';
import type { ModelLookup } from '../registry/registry.js';

/** SPEC §9. */
export const EXIT = { OK: 0, FAILURE: 1, USAGE: 2 } as const;

/**
 * What a command may touch of the outside world, injected so that tests run commands in-process
 * and read what they printed. Writers get whole lines (the newline included).
 */
export interface CliIo {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
  /** Where relative command-line paths (`-c gridedge.yaml`) start. */
  readonly cwd: string;
  /** `${VAR}` values for the config loader; undefined: the loader reads process.env itself. */
  readonly env?: Env;
  /** The model catalogue, loaded only by the commands that need it. */
  readonly models: () => Promise<ModelLookup>;
  /** scrypt for device secrets; tests pass a cheaper one. */
  readonly hash?: (secret: string) => Promise<string>;
}

export interface Command {
  /** The words that select it: `config check`. */
  readonly name: string;
  readonly summary: string;
  /** `gridedge config check [-c FILE]` */
  readonly usage: string;
  /** More lines for `gridedge help <command>`. */
  readonly details?: string;
  run(args: readonly string[], io: CliIo): Promise<number>;
}

/** Bad usage: printed with the command's usage line, exit code 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** util.parseArgs in strict mode, with its errors turned into usage errors. */
export function parseFlags<T extends NonNullable<ParseArgsConfig['options']>>(args: readonly string[], options: T, allowPositionals: boolean) {
  try {
    return parseArgs({ args: [...args], options, allowPositionals, strict: true });
  } catch (err) {
    throw new UsageError((err as Error).message.replace(/\. To specify a positional argument.*$/s, ''));
  }
}

export const CONFIG_FLAG = { config: { type: 'string', short: 'c', default: 'gridedge.yaml' } } as const;

/** A path as the operator should see it: relative to where they are when it is below it. */
export function displayPath(path: string, cwd: string): string {
  const abs = resolve(cwd, path);
  const rel = relative(cwd, abs);
  return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel) ? rel : abs;
}

export function printIssues(io: CliIo, issues: readonly ConfigIssue[]): void {
  for (const issue of issues) io.stderr(`${formatIssue(issue)}\n`);
}

export function printWarnings(io: CliIo, warnings: readonly ConfigIssue[]): void {
  for (const w of warnings) io.stderr(`warning: ${formatIssue(w)}\n`);
}

export interface CliConfig {
  readonly config: GatewayConfig;
  /** The config file, absolute. */
  readonly file: string;
  /** The config file as messages name it. */
  readonly shown: string;
  /** How messages name any other file. */
  readonly display: (path: string) => string;
}

/** Loads `-c FILE` (relative to the working directory); a ConfigError propagates to main (exit 2). */
export async function loadCliConfig(path: string, io: CliIo): Promise<CliConfig> {
  const file = resolve(io.cwd, path);
  const display = (p: string) => displayPath(p, io.cwd);
  const shown = display(file);
  const config = await loadConfig(file, { displayName: shown, ...(io.env ? { env: io.env } : {}) });
  return { config, file, shown, display };
}
