import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import { z } from 'zod';
import { substituteEnv, type Env } from './env.js';
import { ConfigError, describeFsError, type ConfigIssue } from './errors.js';
import { GatewayConfigSchema, type GatewayConfig } from './schema.js';
import { MAX_YAML_DEPTH, yamlTooDeepAt } from '../../devices/yaml-depth.js';

export interface LoadConfigOptions {
  /**
   * Variables for `${NAME}`. The loader is the one module that reads `process.env` (STYLE.md);
   * tests pass their own.
   */
  readonly env?: Env;
  /** How the file is named in messages; default: its name as given. */
  readonly displayName?: string;
}

/**
 * Reads, substitutes, validates and freezes gridedge.yaml (SPEC §11). Relative paths in it are
 * resolved against the config file's folder, not the working directory, so the gateway behaves
 * the same whether started by systemd or by hand. Throws a {@link ConfigError} listing every
 * problem as `file: field.path: message`.
 */
export async function loadConfig(file: string, options: LoadConfigOptions = {}): Promise<GatewayConfig> {
  const shown = options.displayName ?? file;
  let source: string;
  try {
    source = await readFile(file, 'utf8');
  } catch (err) {
    throw new ConfigError([{ code: 'CFG_ERR_READ', file: shown, message: `cannot read: ${describeFsError(err)}` }], { cause: err });
  }
  return parseConfig(source, { file, shown, env: options.env ?? process.env });
}

/** The same as {@link loadConfig} for text already in hand; `file` locates relative paths. */
export function parseConfig(source: string, where: { file: string; shown?: string; env?: Env }): GatewayConfig {
  const shown = where.shown ?? where.file;
  const deepAt = yamlTooDeepAt(source);
  if (deepAt !== undefined) throw new ConfigError([{ code: 'CFG_ERR_YAML', file: shown, line: deepAt, message: `YAML: nested deeper than ${MAX_YAML_DEPTH} levels` }]);
  const doc = parseDocument(source, { uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      doc.errors.map((e) => ({
        code: 'CFG_ERR_YAML',
        file: shown,
        ...(e.linePos?.[0] ? { line: e.linePos[0].line } : {}),
        message: `YAML: ${(e.message.split('\n')[0] ?? e.code).replace(/ at line \d+, column \d+:?$/, '')}`,
      })),
    );
  }
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    // Aliases expanding past maxAliasCount (a "billion laughs" file): the yaml library throws.
    throw new ConfigError([{ code: 'CFG_ERR_YAML', file: shown, message: `YAML: ${(err as Error).message}` }], { cause: err });
  }
  if (raw === null || raw === undefined) throw new ConfigError([{ code: 'CFG_ERR_INVALID', file: shown, message: 'the file is empty' }]);

  const { value, missing } = substituteEnv(raw, where.env ?? process.env);
  if (missing.length > 0) {
    throw new ConfigError(
      missing.map((m) => ({ code: 'CFG_ERR_ENV', file: shown, path: z.core.toDotPath(m.path), message: `environment variable ${m.name} is not set` })),
    );
  }

  const parsed = GatewayConfigSchema.safeParse(value);
  if (!parsed.success) throw new ConfigError(zodIssues(parsed.error, shown, 'CFG_ERR_INVALID'));
  return deepFreeze(resolvePaths(parsed.data, dirname(resolve(where.file))));
}

/** zod issues as located config issues; an unknown key is reported at the key itself. */
export function zodIssues(error: z.ZodError, file: string, code: ConfigIssue['code'], prefix: readonly (string | number)[] = []): ConfigIssue[] {
  return error.issues.flatMap((issue): ConfigIssue[] => {
    const path = [...prefix, ...issue.path];
    if (issue.code === 'unrecognized_keys') {
      return issue.keys.map((key) => ({ code, file, path: z.core.toDotPath([...path, key]), message: 'unknown key' + suggest(key, issue.path) }));
    }
    let message = issue.message;
    // zod says "Invalid input: expected string, received undefined" for a missing key.
    if (issue.code === 'invalid_type' && / received undefined$/.test(message)) message = `required (${issue.expected})`;
    return [{ code, file, path: path.length > 0 ? z.core.toDotPath(path) : '(top level)', message }];
  });
}

const KNOWN_KEYS: Record<string, readonly string[]> = {
  '': ['gateway', 'site', 'mqtt', 'serial', 'devices', 'sinks', 'outbox', 'uplink', 'rules', 'escalation', 'http', 'users'],
};

/** A typo hint for top-level keys (`escalaton` → `escalation`); nested keys get none yet. */
function suggest(key: string, path: readonly PropertyKey[]): string {
  const known = KNOWN_KEYS[path.join('.')];
  if (!known) return '';
  const best = known.map((k) => [k, editDistance(k, key)] as const).sort((a, b) => a[1] - b[1])[0];
  return best && best[1] <= 2 ? ` (did you mean ${best[0]}?)` : '';
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min((prev[j] ?? 0) + 1, (cur[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length] ?? 0;
}

function resolvePaths(cfg: GatewayConfig, base: string): GatewayConfig {
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(base, p));
  const absOpt = <T extends string | undefined>(p: T): T => (p === undefined ? p : (abs(p) as T));
  return {
    ...cfg,
    gateway: { ...cfg.gateway, dataDir: abs(cfg.gateway.dataDir) },
    mqtt: cfg.mqtt.tls ? { ...cfg.mqtt, tls: { ...cfg.mqtt.tls, cert: abs(cfg.mqtt.tls.cert), key: abs(cfg.mqtt.tls.key), ...opt('ca', absOpt(cfg.mqtt.tls.ca)) } } : cfg.mqtt,
    devices: typeof cfg.devices === 'string' ? abs(cfg.devices) : cfg.devices,
    ...(cfg.uplink
      ? {
          uplink: {
            ...cfg.uplink,
            ...(cfg.uplink.tls
              ? { tls: { ...cfg.uplink.tls, ...opt('ca', absOpt(cfg.uplink.tls.ca)), ...opt('cert', absOpt(cfg.uplink.tls.cert)), ...opt('key', absOpt(cfg.uplink.tls.key)) } }
              : {}),
          },
        }
      : {}),
    rules: cfg.rules.map((r) => (r === 'builtin' ? r : abs(r))),
  };
}

function opt<K extends string, V>(key: K, value: V | undefined): Partial<Record<K, V>> {
  return value === undefined ? {} : ({ [key]: value } as Record<K, V>);
}

/** Freezes the whole tree: the config is read-only once loaded (STYLE.md, after fastify). */
export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

