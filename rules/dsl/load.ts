import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { isAbsolute, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isNode, LineCounter, parseDocument, type Document } from 'yaml';
import { MAX_YAML_DEPTH, yamlTooDeepAt } from '../../devices/yaml-depth.js';
import { compileRule, type CompiledRule } from './compile.js';
import { formatPath, RuleError, type RuleErrorCode, type RuleIssue } from './errors.js';
import { RULE_FIELDS, RuleFileSchema, RuleSchema, relayIssue } from './schema.js';

/** The name that stands for the rule pack shipped with gridedge (SPEC §11: `rules: [builtin, ./rules/local.yaml]`). */
export const BUILTIN = 'builtin';

/**
 * rules/default-rules.yaml, from the source tree (rules/dsl/ → ../) or from the build
 * (dist/rules/dsl/ → ../../../rules/, since tsc does not copy YAML).
 */
export function builtinRulesPath(): string {
  const candidates = [new URL('../default-rules.yaml', import.meta.url), new URL('../../../rules/default-rules.yaml', import.meta.url)];
  for (const url of candidates) {
    const path = fileURLToPath(url);
    if (existsSync(path)) return path;
  }
  return fileURLToPath(candidates[0] as URL);
}

/** One rule file's text, and the name messages give it. */
export interface RuleSource {
  readonly file: string;
  readonly text: string;
}

export interface FileSummary {
  readonly file: string;
  /** Rules the file defines (valid or not). */
  readonly rules: number;
  /** Of those, the ones that replace an earlier file's rule. */
  readonly overrides: number;
  readonly issues: number;
}

export interface CheckedRules {
  /** The valid rules in load order; an override takes the place of the rule it replaces. */
  readonly rules: readonly CompiledRule[];
  readonly issues: readonly RuleIssue[];
  readonly files: readonly FileSummary[];
}

export interface CheckOptions {
  /**
   * Sources loaded before `sources` only so that overrides and duplicates are judged against them;
   * their rules and issues are not reported (`gridedge rules check local.yaml` judges local.yaml as
   * it would load after `builtin`).
   */
  readonly base?: readonly RuleSource[];
}

interface ParsedFile {
  readonly file: string;
  readonly rules: { readonly index: number; readonly id?: string; readonly override: boolean; readonly compiled?: CompiledRule }[];
  readonly issues: RuleIssue[];
}

/** The line of the deepest YAML node on `path` that exists. */
function lineOf(doc: Document, counter: LineCounter, path: readonly PropertyKey[]): number | undefined {
  for (let n = path.length; n >= 0; n--) {
    const node: unknown = n === 0 ? doc.contents : doc.getIn(path.slice(0, n) as unknown[], true);
    if (isNode(node) && node.range) return counter.linePos(node.range[0]).line;
  }
  return undefined;
}

function yamlHint(message: string): string {
  return /block scalar|Plain value cannot start with/.test(message) ? " — operators must be quoted in YAML: op: '>='" : '';
}

/** Parses, validates and compiles one file on its own (duplicates across files are `checkRules`'). */
function parseFile(source: RuleSource): ParsedFile {
  const { file } = source;
  const issues: RuleIssue[] = [];
  const counter = new LineCounter();
  const deepAt = yamlTooDeepAt(source.text);
  if (deepAt !== undefined) return { file, rules: [], issues: [{ code: 'RULE_ERR_YAML', file, message: `not valid YAML: nested deeper than ${MAX_YAML_DEPTH} levels`, line: deepAt }] };
  const doc = parseDocument(source.text, { lineCounter: counter, uniqueKeys: true, prettyErrors: false });
  if (doc.errors.length > 0) {
    for (const e of doc.errors) {
      const first = e.message.split('\n')[0] ?? e.message;
      issues.push({ code: 'RULE_ERR_YAML', file, message: `not valid YAML: ${first}${yamlHint(first)}`, line: counter.linePos(e.pos[0]).line });
    }
    return { file, rules: [], issues };
  }
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    // Aliases expanding past maxAliasCount (a "billion laughs" file): the yaml library throws.
    return { file, rules: [], issues: [{ code: 'RULE_ERR_YAML', file, message: `not valid YAML: ${(err as Error).message}` }] };
  }
  const top = RuleFileSchema.safeParse(value);
  if (!top.success) {
    for (const i of top.error.issues) {
      const r = relayIssue(i, 'rules');
      const path = r.path ?? [];
      const line = lineOf(doc, counter, path);
      issues.push({ code: 'RULE_ERR_SCHEMA', file, path: formatPath(path), message: r.message ?? i.message, ...(line === undefined ? {} : { line }) });
    }
    return { file, rules: [], issues };
  }

  const rules: ParsedFile['rules'][number][] = [];
  top.data.rules.forEach((raw, index) => {
    const rawObj = raw !== null && typeof raw === 'object' ? (raw as Record<string, unknown>) : {};
    const rawId = typeof rawObj['id'] === 'string' && /^[a-z0-9][a-z0-9_.:-]*$/.test(rawObj['id']) ? rawObj['id'] : undefined;
    const where = rawId !== undefined ? { ruleId: rawId } : { ruleIndex: index };
    const push = (code: RuleErrorCode, path: readonly PropertyKey[], message: string) => {
      const line = lineOf(doc, counter, ['rules', index, ...path]);
      issues.push({ code, file, ...where, path: formatPath(path), message, ...(line === undefined ? {} : { line }) });
    };
    const parsed = RuleSchema.safeParse(raw);
    if (!parsed.success) {
      for (const i of parsed.error.issues) {
        const r = relayIssue(i, RULE_FIELDS);
        push('RULE_ERR_SCHEMA', r.path ?? [], r.message ?? i.message);
      }
      rules.push({ index, ...(rawId === undefined ? {} : { id: rawId }), override: rawObj['override'] === true });
      return;
    }
    const compiled = compileRule(parsed.data, { source: file });
    for (const i of compiled.issues) push('RULE_ERR_COMPILE', splitPath(i.path), i.message);
    rules.push({ index, id: parsed.data.id, override: parsed.data.override, ...(compiled.rule ? { compiled: compiled.rule } : {}) });
  });
  return { file, rules, issues };
}

/** `when.all[1].op` → ['when', 'all', 1, 'op'] (for line lookup). */
function splitPath(path: string): PropertyKey[] {
  const out: PropertyKey[] = [];
  for (const m of path.matchAll(/([^.[\]]+)|\[(\d+)\]/g)) out.push(m[2] !== undefined ? Number(m[2]) : (m[1] as string));
  return out;
}

/**
 * Validates and compiles rule files in load order. Every problem in every file is reported.
 * Ids are unique across files: a later file may replace an earlier file's rule only with
 * `override: true` (an accidental clash with a builtin rule is an error, not a silent swap),
 * and `override: true` with nothing to replace is an error too (a typo in the id would
 * otherwise leave the builtin rule in force while the operator thinks it is replaced).
 */
export function checkRules(sources: readonly RuleSource[], options: CheckOptions = {}): CheckedRules {
  const base = options.base ?? [];
  const all = [...base.map((s) => ({ s, reported: false })), ...sources.map((s) => ({ s, reported: true }))];
  const byId = new Map<string, { file: string; slot: number }>();
  const slots: (CompiledRule | undefined)[] = [];
  const issues: RuleIssue[] = [];
  const files: FileSummary[] = [];

  for (const { s, reported } of all) {
    const parsed = parseFile(s);
    const fileIssues: RuleIssue[] = [...parsed.issues];
    const seenHere = new Map<string, number>();
    let overrides = 0;
    for (const r of parsed.rules) {
      if (r.id === undefined) continue;
      const id = r.id;
      const where = { code: 'RULE_ERR_DUPLICATE' as RuleErrorCode, file: s.file, ruleId: id, path: 'id' };
      const here = seenHere.get(id);
      if (here !== undefined) {
        fileIssues.push({ ...where, message: `duplicate rule id: rules[${here}] of this file has it too` });
        continue;
      }
      seenHere.set(id, r.index);
      const earlier = byId.get(id);
      if (earlier && !r.override) {
        fileIssues.push({ ...where, message: `duplicate rule id: ${earlier.file} already has a rule ${id}; to replace it, add override: true` });
        continue;
      }
      if (!earlier && r.override) {
        fileIssues.push({ ...where, code: 'RULE_ERR_OVERRIDE', path: 'override', message: 'override: true, but no earlier rule file has this id (check the id, and that the file comes after the one it overrides in rules:)' });
        continue;
      }
      const compiled = r.compiled && earlier ? { ...r.compiled, overrides: true } : r.compiled;
      if (earlier) {
        overrides++;
        slots[earlier.slot] = compiled && Object.freeze(compiled);
        byId.set(id, { file: s.file, slot: earlier.slot });
      } else {
        byId.set(id, { file: s.file, slot: slots.length });
        slots.push(compiled);
      }
    }
    if (reported) {
      issues.push(...fileIssues);
      files.push({ file: s.file, rules: parsed.rules.length, overrides, issues: fileIssues.length });
    }
  }
  return { rules: slots.filter((r): r is CompiledRule => r !== undefined), issues, files };
}

export interface LoadOptions {
  /** How messages name a file (default: as given in the list). */
  readonly display?: (path: string) => string;
  /** Judge overrides against these entries without reporting them (see CheckOptions.base). */
  readonly base?: readonly string[];
}

export interface LoadedRules {
  readonly rules: readonly CompiledRule[];
  readonly files: readonly FileSummary[];
}

/** Reads the entries (`builtin` or paths, relative to `baseDir`); unreadable files are issues too. */
export async function readRuleSources(entries: readonly string[], baseDir: string, display?: (path: string) => string): Promise<{ sources: RuleSource[]; issues: RuleIssue[] }> {
  const sources: RuleSource[] = [];
  const issues: RuleIssue[] = [];
  for (const entry of entries) {
    const builtin = entry === BUILTIN;
    const path = builtin ? builtinRulesPath() : isAbsolute(entry) ? entry : resolve(baseDir, entry);
    const file = builtin ? BUILTIN : (display?.(path) ?? entry);
    try {
      sources.push({ file, text: await readFile(path, 'utf8') });
    } catch (err) {
      issues.push({ code: 'RULE_ERR_READ', file, message: `cannot read: ${describeFsError(err)}` });
    }
  }
  return { sources, issues };
}

/** Rule sources and their issues, without throwing: what `gridedge rules check` prints. */
export async function checkRuleFiles(entries: readonly string[], baseDir: string, options: LoadOptions = {}): Promise<CheckedRules> {
  const read = await readRuleSources(entries, baseDir, options.display);
  const base = options.base ? (await readRuleSources(options.base, baseDir, options.display)).sources : [];
  const checked = checkRules(read.sources, { base });
  return { ...checked, issues: [...read.issues, ...checked.issues] };
}

/**
 * Loads the rule files of the config (`rules: [builtin, ./rules/local.yaml]`) once at start-up.
 * Throws a RuleError listing every problem when any file is unreadable or any rule invalid: a
 * gateway must not start with half its rules.
 */
export async function loadRules(entries: readonly string[], baseDir: string, options: LoadOptions = {}): Promise<LoadedRules> {
  const checked = await checkRuleFiles(entries, baseDir, options);
  if (checked.issues.length > 0) throw new RuleError(checked.issues);
  return { rules: checked.rules, files: checked.files };
}

/** An fs error as an operator reads it: `no such file`, not `ENOENT` (gateway/config re-exports it). */
export function describeFsError(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case 'ENOENT':
      return 'no such file';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'EISDIR':
      return 'is a folder, not a file';
    default:
      return code ?? String(err);
  }
}
