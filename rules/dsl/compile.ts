import { createHash } from 'node:crypto';
import { MODELS } from '../../devices/catalogue.js';
import { KINDS, SELF_TEST_EVENTS, VOCABULARY, type Kind } from '../../devices/vocabulary.js';
import type { Scope, Severity } from '../signals.js';
import { formatDuration } from './duration.js';
import type { RuleIssue } from './errors.js';
import type { ConditionDef, Op, RuleDefinition, SetpointRef, ValueDef } from './schema.js';

/*
 * The compiler: a parsed rule (schema.ts) → a CompiledRule, once, at load (STYLE.md:
 * json-rules-engine). It resolves every name against devices/vocabulary.ts (an unknown metric or
 * event is an error, not a rule that silently never fires), expands metric patterns (`t*_c`),
 * classifies each condition as an *instant* (true at the moment of a reading: event, rise,
 * count, all/any with `within`) or a *level* (true over a stretch of time: metric, state,
 * silentFor, not, all/any of levels), numbers the nodes and gives each its correlation scope.
 * The result is plain, frozen data; the engine builds its evaluators from it.
 */

const SCOPE_RANK: Readonly<Record<Scope, number>> = { device: 0, room: 1, building: 2, grid: 3 };

interface NodeCommon {
  /** Pre-order index within its tree (when and clear are numbered separately). */
  readonly id: number;
  /** Level: holds over a stretch of time; instant: holds at the moment of a reading. */
  readonly level: boolean;
  /** The scope its state is kept at: leaves per device (count: its own), combinators their own or the parent's. */
  readonly scope: Scope;
  /** Level nodes only: must hold without a break for this long. */
  readonly forMs?: number;
  /** The kinds whose readings can inform it. */
  readonly kinds: readonly Kind[];
}

export type CompiledNode =
  | (NodeCommon & { readonly form: 'event'; readonly events: readonly string[] })
  | (NodeCommon & {
      readonly form: 'threshold';
      /** The metrics a pattern stands for, across the node's kinds. */
      readonly metrics: readonly string[];
      readonly pattern: string;
      readonly op: Op;
      readonly value: ValueDef;
      readonly of: 'any' | 'all';
    })
  | (NodeCommon & { readonly form: 'state'; readonly flag: string; readonly is: boolean })
  | (NodeCommon & { readonly form: 'rise'; readonly metrics: readonly string[]; readonly pattern: string; readonly by: number; readonly withinMs: number })
  | (NodeCommon & {
      readonly form: 'count';
      readonly events: readonly string[];
      readonly atLeast: number;
      readonly withinMs: number;
      readonly distinctDevices: boolean;
    })
  | (NodeCommon & { readonly form: 'silent'; readonly ms?: number; readonly heartbeats?: number; readonly events?: readonly string[] })
  | (NodeCommon & { readonly form: 'all' | 'any'; readonly children: readonly CompiledNode[]; readonly withinMs?: number })
  | (NodeCommon & { readonly form: 'not'; readonly children: readonly [CompiledNode] });

export interface CompiledRule {
  readonly id: string;
  readonly type: string;
  readonly severity: Severity;
  readonly scope: Scope;
  readonly description?: string;
  /** The file it came from, as messages name it (`builtin`, `rules/local.yaml`). */
  readonly source: string;
  /** True when it replaced an earlier file's rule of the same id. */
  readonly overrides: boolean;
  readonly match: {
    /** The kinds the rule can see at all: the match's kinds narrowed to those its conditions name. */
    readonly kinds: readonly Kind[];
    readonly models?: readonly string[];
    readonly exceptModels?: readonly string[];
  };
  readonly when: CompiledNode;
  readonly clear?: CompiledNode;
  /** `when` has a `for` or a `silentFor`: it raises once per episode, not on every reading. */
  readonly timed: boolean;
  /** What readings can change the rule, for the engine's index. */
  readonly interest: {
    readonly events: readonly string[];
    readonly metrics: readonly string[];
    readonly states: readonly string[];
    /** silentFor: every reading of a matching device counts. */
    readonly everyReading: boolean;
  };
  /** Changes when the conditions change: the engine drops rule state saved for another shape. */
  readonly fingerprint: string;
  /** Short and safe to send upstream: the description, or the condition in words. */
  readonly summary: string;
  /** The parsed definition, as written (durations in ms). */
  readonly definition: RuleDefinition;
}

type IssueSink = (path: string, message: string) => void;

interface Ctx {
  readonly kinds: readonly Kind[];
  readonly tree: 'when' | 'clear';
  readonly issue: IssueSink;
  next: number;
}

const KIND_LIST = (kinds: readonly Kind[]) => (kinds.length === KINDS.length ? KINDS.join(', ') : kinds.join(', '));

function patternToRegExp(pattern: string): RegExp {
  return new RegExp(`^${pattern.split('*').map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
}

/** The kinds among `kinds` whose vocabulary list has `name`. */
function kindsWith(kinds: readonly Kind[], list: 'metrics' | 'states' | 'events', name: string): Kind[] {
  return kinds.filter((k) => VOCABULARY[k][list].includes(name));
}

function resolveNames(ctx: Ctx, path: string, list: 'events' | 'states', names: readonly string[], what: string, selfTestOk = false): Kind[] {
  const found = new Set<Kind>();
  names.forEach((name, i) => {
    const at = names.length === 1 ? path : `${path}[${i}]`;
    const kinds = kindsWith(ctx.kinds, list, name);
    if (kinds.length === 0) {
      ctx.issue(at, `unknown ${what} "${name}": not ${what === 'event' ? 'an' : 'a'} ${what} of ${KIND_LIST(ctx.kinds)} (${describeVocabulary(ctx.kinds, list)})`);
    }
    if (list === 'events' && !selfTestOk && ctx.tree === 'when' && SELF_TEST_EVENTS.has(name)) {
      ctx.issue(at, `"${name}" is a self-test event: a self-test never raises (SPEC §6); use it in silentFor or clear`);
    }
    for (const k of kinds) found.add(k);
  });
  return ctx.kinds.filter((k) => found.has(k));
}

function describeVocabulary(kinds: readonly Kind[], list: 'metrics' | 'states' | 'events'): string {
  return kinds.map((k) => `${k}: ${VOCABULARY[k][list].join(' ')}`).join('; ');
}

function resolveMetrics(ctx: Ctx, path: string, pattern: string): { metrics: string[]; kinds: Kind[] } {
  const re = patternToRegExp(pattern);
  const metrics = new Set<string>();
  const kinds: Kind[] = [];
  for (const k of ctx.kinds) {
    const hit = VOCABULARY[k].metrics.filter((m) => re.test(m));
    if (hit.length > 0) kinds.push(k);
    for (const m of hit) metrics.add(m);
  }
  if (metrics.size === 0) {
    const what = pattern.includes('*') ? `metric pattern "${pattern}" matches no metric` : `unknown metric "${pattern}"`;
    ctx.issue(path, `${what} of ${KIND_LIST(ctx.kinds)} (${describeVocabulary(ctx.kinds, 'metrics')})`);
  }
  return { metrics: [...metrics], kinds };
}

function checkScope(ctx: Ctx, path: string, scope: Scope | undefined, parent: Scope): Scope {
  if (scope === undefined) return parent;
  if (SCOPE_RANK[scope] > SCOPE_RANK[parent]) ctx.issue(`${path}.scope`, `${scope} is wider than the enclosing scope ${parent}: a condition correlates within its rule's scope`);
  return scope;
}

function join(path: string, key: string): string {
  return `${path}.${key}`;
}

function compileNode(def: ConditionDef, path: string, parentScope: Scope, ctx: Ctx): CompiledNode {
  const id = ctx.next++;
  const forOf = (d: { forMs?: number }) => (d.forMs === undefined ? {} : { forMs: d.forMs });
  switch (def.form) {
    case 'event':
      return { id, form: 'event', level: false, scope: 'device', kinds: resolveNames(ctx, join(path, 'event'), 'events', def.events, 'event'), events: def.events };
    case 'threshold': {
      const { metrics, kinds } = resolveMetrics(ctx, join(path, 'metric'), def.metric);
      return { id, form: 'threshold', level: true, scope: 'device', kinds, metrics, pattern: def.metric, op: def.op, value: def.value, of: def.of, ...forOf(def) };
    }
    case 'state':
      return { id, form: 'state', level: true, scope: 'device', kinds: resolveNames(ctx, join(path, 'state'), 'states', [def.flag], 'state flag'), flag: def.flag, is: def.is, ...forOf(def) };
    case 'rise': {
      const { metrics, kinds } = resolveMetrics(ctx, join(path, 'rise'), def.metric);
      return { id, form: 'rise', level: false, scope: 'device', kinds, metrics, pattern: def.metric, by: def.by, withinMs: def.withinMs };
    }
    case 'count': {
      const scope = checkScope(ctx, path, def.scope, parentScope);
      const kinds = resolveNames(ctx, join(path, 'count'), 'events', def.events, 'event');
      return { id, form: 'count', level: false, scope, kinds, events: def.events, atLeast: def.atLeast, withinMs: def.withinMs, distinctDevices: def.distinctDevices };
    }
    case 'silent': {
      const kinds = def.events ? resolveNames(ctx, join(path, 'event'), 'events', def.events, 'event', true) : [...ctx.kinds];
      return {
        id,
        form: 'silent',
        level: true,
        scope: 'device',
        kinds,
        ...(def.ms === undefined ? {} : { ms: def.ms }),
        ...(def.heartbeats === undefined ? {} : { heartbeats: def.heartbeats }),
        ...(def.events === undefined ? {} : { events: def.events }),
      };
    }
    case 'all':
    case 'any': {
      const scope = checkScope(ctx, path, def.scope, parentScope);
      const children = def.conditions.map((c, i) => compileNode(c, `${path}.${def.form}[${i}]`, scope, ctx));
      const level = def.withinMs === undefined && children.every((c) => c.level);
      if (def.forMs !== undefined && !level) {
        ctx.issue(join(path, 'for'), def.withinMs !== undefined ? 'for and within do not go together: within makes a correlation of moments' : `for needs every condition of ${def.form} to last (metric, state, silentFor, not), but one happens at an instant (event, rise, count)`);
      }
      const kinds = [...new Set(children.flatMap((c) => c.kinds))];
      return { id, form: def.form, level, scope, kinds, children, ...(def.withinMs === undefined ? {} : { withinMs: def.withinMs }), ...forOf(def) };
    }
    case 'not': {
      const scope = checkScope(ctx, path, def.scope, parentScope);
      const child = compileNode(def.condition, join(path, 'not'), scope, ctx);
      if (!child.level) {
        ctx.issue(join(path, 'not'), 'not needs a condition that lasts (metric, state, silentFor, or all/any of them without within); "no event for a while" is silentFor');
      }
      return { id, form: 'not', level: true, scope, kinds: child.kinds, children: [child], ...forOf(def) };
    }
  }
}

function walk(node: CompiledNode, visit: (n: CompiledNode) => void): void {
  visit(node);
  if (node.form === 'all' || node.form === 'any' || node.form === 'not') for (const c of node.children) walk(c, visit);
}

function valueText(v: ValueDef): string {
  if (typeof v === 'number') return String(v);
  const sp: SetpointRef = v;
  return sp.factor === undefined ? `${sp.setpoint} (default ${sp.default})` : `${sp.factor}×${sp.setpoint} (default ${sp.default})`;
}

/** The condition in words, for signal summaries and `rules check`. */
export function describeNode(node: CompiledNode): string {
  const forText = node.forMs === undefined ? '' : ` for ${formatDuration(node.forMs)}`;
  switch (node.form) {
    case 'event':
      return node.events.join(' or ');
    case 'threshold':
      return `${node.of === 'all' && node.pattern.includes('*') ? 'every ' : ''}${node.pattern} ${node.op} ${valueText(node.value)}${forText}`;
    case 'state':
      return `${node.is ? '' : 'not '}${node.flag}${forText}`;
    case 'rise':
      return `${node.pattern} rises by ${node.by} within ${formatDuration(node.withinMs)}`;
    case 'count':
      return `${node.atLeast}× ${node.events.join('/')}${node.distinctDevices ? ' from distinct devices' : ''} within ${formatDuration(node.withinMs)} in a ${node.scope}`;
    case 'silent': {
      const span = node.ms !== undefined ? formatDuration(node.ms) : `${node.heartbeats}× heartbeat`;
      return node.events ? `no ${node.events.join('/')} for ${span}` : `silent for ${span}`;
    }
    case 'all':
    case 'any': {
      const inner = node.children.map(describeNode).join(node.form === 'all' ? ' and ' : ' or ');
      const within = node.withinMs === undefined ? '' : ` within ${formatDuration(node.withinMs)}`;
      return node.children.length === 1 && within === '' && forText === '' ? inner : `(${inner})${within}${forText}`;
    }
    case 'not':
      return `not (${describeNode(node.children[0])})${forText}`;
  }
}

export interface CompileOptions {
  readonly source: string;
  readonly overrides?: boolean;
}

/**
 * Compiles one parsed rule. Issues carry only `path` and `message` here; the loader adds the file,
 * the rule id and the line.
 */
export function compileRule(def: RuleDefinition, options: CompileOptions): { rule?: CompiledRule; issues: { path: string; message: string }[] } {
  const issues: { path: string; message: string }[] = [];
  const issue: IssueSink = (path, message) => void issues.push({ path, message });

  // ---- match: which devices the rule looks at
  let kinds: Kind[] = def.match?.kind ? [...new Set(def.match.kind)] : [...KINDS];
  const checkModels = (field: 'model' | 'exceptModel', list: readonly string[] | undefined) =>
    list?.forEach((m, i) => {
      const model = MODELS.get(m);
      const at = `match.${field}${list.length === 1 ? '' : `[${i}]`}`;
      if (!model) issue(at, `unknown model "${m}" (models: ${[...MODELS.keys()].join(', ')})`);
      else if (field === 'model' && def.match?.kind && !def.match.kind.includes(model.kind)) issue(at, `model ${m} is ${model.kind}, not ${def.match.kind.join('/')}`);
    });
  checkModels('model', def.match?.model);
  checkModels('exceptModel', def.match?.exceptModel);
  if (def.match?.model && !def.match.kind) {
    const ofModels = new Set(def.match.model.map((m) => MODELS.get(m)?.kind).filter((k): k is Kind => k !== undefined));
    kinds = kinds.filter((k) => ofModels.has(k));
  }

  const whenCtx: Ctx = { kinds, tree: 'when', issue: (p, m) => issue(`when${p}`, m), next: 0 };
  const when = compileNode(def.when, '', def.scope, whenCtx);
  let clear: CompiledNode | undefined;
  if (def.clear) {
    const clearCtx: Ctx = { kinds, tree: 'clear', issue: (p, m) => issue(`clear${p}`, m), next: 0 };
    clear = compileNode(def.clear, '', def.scope, clearCtx);
  }
  if (issues.length > 0) return { issues };

  const events = new Set<string>();
  const metrics = new Set<string>();
  const states = new Set<string>();
  let everyReading = false;
  let timed = false;
  const seenKinds = new Set<Kind>();
  const collect = (n: CompiledNode) => {
    for (const k of n.kinds) seenKinds.add(k);
    switch (n.form) {
      case 'event':
      case 'count':
        n.events.forEach((e) => events.add(e));
        break;
      case 'threshold':
      case 'rise':
        n.metrics.forEach((m) => metrics.add(m));
        break;
      case 'state':
        states.add(n.flag);
        break;
      case 'silent':
        everyReading = true;
        break;
      default:
        break;
    }
  };
  walk(when, (n) => {
    collect(n);
    if (n.forMs !== undefined || n.form === 'silent') timed = true;
  });
  if (clear) walk(clear, collect);

  const match = {
    kinds: kinds.filter((k) => seenKinds.has(k)),
    ...(def.match?.model ? { models: def.match.model } : {}),
    ...(def.match?.exceptModel ? { exceptModels: def.match.exceptModel } : {}),
  };
  const fingerprint = createHash('sha256')
    .update(JSON.stringify({ scope: def.scope, when, clear: clear ?? null }))
    .digest('hex')
    .slice(0, 16);
  const summary = (def.description ?? describeNode(when)).slice(0, 200);
  const rule: CompiledRule = {
    id: def.id,
    type: def.type,
    severity: def.severity,
    scope: def.scope,
    ...(def.description === undefined ? {} : { description: def.description }),
    source: options.source,
    overrides: options.overrides ?? false,
    match,
    when,
    ...(clear ? { clear } : {}),
    timed,
    interest: { events: [...events], metrics: [...metrics], states: [...states], everyReading },
    fingerprint,
    summary,
    definition: def,
  };
  return { rule: deepFreeze(rule), issues };
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

export type { RuleIssue };
