import { z } from 'zod';
import { KINDS } from '../../devices/vocabulary.js';
import { SCOPES, SEVERITIES, type Scope } from '../signals.js';
import { DURATION_HINT, parseDuration, parseHeartbeatMultiple } from './duration.js';

/*
 * The rule file schema (SPEC §6). A rule file is YAML:
 *
 *   rules:
 *     - id: electrical.leakage
 *       type: electrical.leakage
 *       severity: major
 *       scope: device
 *       match: { kind: electrical }
 *       when:  { metric: residual_ma, op: '>=', value: { setpoint: residual_ma, default: 300 }, for: 5s }
 *       clear: { metric: residual_ma, op: '<', value: 200, for: 30s }
 *
 * A condition is one of (the key that names it decides which):
 *   { event: fire_alarm }                      { event: [over_voltage, under_voltage] }
 *   { metric: t*_c, op: '>=', value: 70, of: any|all, for: 10s }
 *   { state: short_circuit, is: false, for: 5s }
 *   { rise: t*_c, by: 10, within: 60s }
 *   { count: fire_alarm, atLeast: 2, within: 2m, distinctDevices: true, scope: room }
 *   { silentFor: 2x }                           { silentFor: 35d, event: test }
 *   { all: [ … ], within: 2m, scope: room }     { any: [ … ] }       { not: { … } }
 *
 * This module checks shapes and turns durations into milliseconds; names (metrics, events,
 * models) are checked against the device vocabulary by the compiler, which knows the rule's kinds.
 */

export const OPS = ['>', '>=', '<', '<=', '==', '!='] as const;
export type Op = (typeof OPS)[number];

const OPS_TEXT = OPS.join(' ');

/** A per-device set-point (DeviceRecord.setpoints[name]) with the value used when the device has none. */
export interface SetpointRef {
  readonly setpoint: string;
  readonly default: number;
  /** The device's set-point is multiplied by this (hysteresis that follows the set-point); not applied to `default`. */
  readonly factor?: number;
}
export type ValueDef = number | SetpointRef;

export type ConditionDef =
  | { readonly form: 'event'; readonly events: readonly string[] }
  | {
      readonly form: 'threshold';
      readonly metric: string;
      readonly op: Op;
      readonly value: ValueDef;
      readonly of: 'any' | 'all';
      readonly forMs?: number;
    }
  | { readonly form: 'state'; readonly flag: string; readonly is: boolean; readonly forMs?: number }
  | { readonly form: 'rise'; readonly metric: string; readonly by: number; readonly withinMs: number }
  | {
      readonly form: 'count';
      readonly events: readonly string[];
      readonly atLeast: number;
      readonly withinMs: number;
      readonly distinctDevices: boolean;
      readonly scope?: Scope;
    }
  | { readonly form: 'silent'; readonly ms?: number; readonly heartbeats?: number; readonly events?: readonly string[] }
  | {
      readonly form: 'all' | 'any';
      readonly conditions: readonly ConditionDef[];
      readonly withinMs?: number;
      readonly scope?: Scope;
      readonly forMs?: number;
    }
  | { readonly form: 'not'; readonly condition: ConditionDef; readonly scope?: Scope; readonly forMs?: number };

// ---- small field schemas ---------------------------------------------------------------------

const NAME = /^[a-z][a-z0-9_]*$/;
const PATTERN = /^[a-z0-9_*]+$/;

const Name = z.string({ error: 'must be a name (lower case, digits, _)' }).regex(NAME, { message: 'must be a name (lower case, digits, _)' });
const MetricPattern = z
  .string({ error: 'must be a metric name, or a pattern like t*_c' })
  .regex(PATTERN, { message: 'must be a metric name, or a pattern like t*_c (lower case, digits, _ and *)' });

function oneOrMany<T extends z.ZodType>(item: T) {
  return z.union([item.transform((v) => [v]), z.array(item).min(1, { message: 'must not be empty' })], {
    error: 'must be a name or a list of names',
  });
}

const Duration = z.unknown().transform((v, ctx): number => {
  const ms = typeof v === 'string' ? parseDuration(v) : undefined;
  if (ms === undefined || ms <= 0) {
    ctx.addIssue({
      code: 'custom',
      message: typeof v === 'number' ? `${DURATION_HINT} (a bare number has no unit)` : `${JSON.stringify(v) ?? 'nothing'} is not a duration: ${DURATION_HINT}`,
    });
    return z.NEVER;
  }
  return ms;
});

const OpSchema = z.unknown().transform((v, ctx): Op => {
  if (typeof v === 'string' && (OPS as readonly string[]).includes(v)) return v as Op;
  // YAML reads an unquoted `!=` as a tag on an empty value and `>=` as a folded block: say so.
  const hint = v === '' || v === null ? " (quote it in YAML: op: '>=' — unquoted, ! and > are YAML syntax)" : '';
  ctx.addIssue({ code: 'custom', message: `must be one of ${OPS_TEXT}${hint}` });
  return z.NEVER;
});

const SetpointSchema = z.strictObject({
  setpoint: Name,
  default: z.number({ error: 'must be a number' }),
  factor: z.number({ error: 'must be a number' }).positive().optional(),
});

const ValueSchema = z.unknown().transform((v, ctx): ValueDef => {
  if (typeof v === 'number' && Number.isFinite(v)) return v;
  if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
    const r = SetpointSchema.safeParse(v);
    if (r.success) return r.data.factor === undefined ? { setpoint: r.data.setpoint, default: r.data.default } : r.data;
    for (const issue of r.error.issues) ctx.addIssue(relay(issue, 'a set-point reference has: setpoint, default, factor'));
    return z.NEVER;
  }
  ctx.addIssue({ code: 'custom', message: 'must be a number, or { setpoint: NAME, default: NUMBER }' });
  return z.NEVER;
});

const ScopeSchema = z.enum(SCOPES, { error: `must be one of ${SCOPES.join(', ')}` });

// ---- conditions ------------------------------------------------------------------------------

const FORMS = ['event', 'metric', 'state', 'rise', 'count', 'silentFor', 'all', 'any', 'not'] as const;
type FormKey = (typeof FORMS)[number];

const FIELDS: Record<FormKey, string> = {
  event: 'event',
  metric: 'metric, op, value, of, for',
  state: 'state, is, for',
  rise: 'rise, by, within',
  count: 'count, atLeast, within, distinctDevices, scope',
  silentFor: 'silentFor, event',
  all: 'all, within, scope, for',
  any: 'any, within, scope, for',
  not: 'not, scope, for',
};

/** A zod issue from a nested parse, re-added under the current path with a friendlier text for unknown keys. */
// A type literal, not an interface: zod's raw issue has an index signature.
type RelayedIssue = {
  code: 'custom';
  path: PropertyKey[];
  message: string;
  input: unknown;
};

function relay(issue: z.core.$ZodIssue, fields: string): RelayedIssue {
  if (issue.code === 'unrecognized_keys') {
    const [first, ...more] = issue.keys;
    const path = more.length === 0 && first !== undefined ? [...issue.path, first] : issue.path;
    const what = more.length === 0 ? 'unknown field' : `unknown fields ${issue.keys.join(', ')}`;
    return { code: 'custom', path, message: `${what} (this has: ${fields})`, input: undefined };
  }
  return { code: 'custom', path: issue.path, message: issue.message, input: undefined };
}

const EventForm = z.strictObject({ event: oneOrMany(Name) });
const ThresholdForm = z.strictObject({
  metric: MetricPattern,
  op: OpSchema,
  value: ValueSchema,
  of: z.enum(['any', 'all'], { error: 'must be any or all' }).default('any'),
  for: Duration.optional(),
});
const StateForm = z.strictObject({ state: Name, is: z.boolean({ error: 'must be true or false' }).default(true), for: Duration.optional() });
const RiseForm = z.strictObject({ rise: MetricPattern, by: z.number({ error: 'must be a number' }).positive({ message: 'must be more than 0' }), within: Duration });
const CountForm = z.strictObject({
  count: oneOrMany(Name),
  atLeast: z.number({ error: 'must be a whole number' }).int({ message: 'must be a whole number' }).min(1, { message: 'must be at least 1' }),
  within: Duration,
  distinctDevices: z.boolean({ error: 'must be true or false' }).default(false),
  scope: ScopeSchema.optional(),
});
const SilentValue = z.unknown().transform((v, ctx): { ms?: number; heartbeats?: number } => {
  if (typeof v === 'string') {
    const heartbeats = parseHeartbeatMultiple(v);
    if (heartbeats !== undefined) return { heartbeats };
    const ms = parseDuration(v);
    if (ms !== undefined && ms > 0) return { ms };
  }
  ctx.addIssue({ code: 'custom', message: `must be a duration (${DURATION_HINT}) or a multiple of the heartbeat (2x)` });
  return z.NEVER;
});
const SilentForm = z.strictObject({ silentFor: SilentValue, event: oneOrMany(Name).optional() });

/** The parsed, normalised condition tree (durations in ms, defaults filled in). */
export const ConditionSchema: z.ZodType<ConditionDef, unknown> = z.lazy(() =>
  z.unknown().transform((v, ctx): ConditionDef => {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) {
      ctx.addIssue({ code: 'custom', message: `must be a condition: a mapping with one of ${FORMS.join(', ')}` });
      return z.NEVER;
    }
    const keys = Object.keys(v);
    // `event` is also silentFor's option, so silentFor decides first.
    const present = keys.includes('silentFor') ? ['silentFor' as const] : FORMS.filter((f) => keys.includes(f));
    const [form, ...others] = present;
    if (form === undefined || others.length > 0) {
      ctx.addIssue({
        code: 'custom',
        message:
          form === undefined
            ? `must be a condition: a mapping with one of ${FORMS.join(', ')}`
            : `a condition has one of ${FORMS.join(', ')}, not several (found ${present.join(' and ')}): combine them with all: or any:`,
      });
      return z.NEVER;
    }
    const parsed = parseForm(form, v);
    if (parsed.ok) return parsed.value;
    for (const issue of parsed.issues) ctx.addIssue(relay(issue, FIELDS[form]));
    return z.NEVER;
  }),
);

type FormResult = { ok: true; value: ConditionDef } | { ok: false; issues: readonly z.core.$ZodIssue[] };

function parseForm(form: FormKey, v: object): FormResult {
  const wrap = <T>(r: z.ZodSafeParseResult<T>, build: (d: T) => ConditionDef): FormResult =>
    r.success ? { ok: true, value: build(r.data) } : { ok: false, issues: r.error.issues };
  switch (form) {
    case 'event':
      return wrap(EventForm.safeParse(v), (d) => ({ form: 'event', events: d.event }));
    case 'metric':
      return wrap(ThresholdForm.safeParse(v), (d) => ({
        form: 'threshold',
        metric: d.metric,
        op: d.op,
        value: d.value,
        of: d.of,
        ...(d.for === undefined ? {} : { forMs: d.for }),
      }));
    case 'state':
      return wrap(StateForm.safeParse(v), (d) => ({ form: 'state', flag: d.state, is: d.is, ...(d.for === undefined ? {} : { forMs: d.for }) }));
    case 'rise':
      return wrap(RiseForm.safeParse(v), (d) => ({ form: 'rise', metric: d.rise, by: d.by, withinMs: d.within }));
    case 'count':
      return wrap(CountForm.safeParse(v), (d) => ({
        form: 'count',
        events: d.count,
        atLeast: d.atLeast,
        withinMs: d.within,
        distinctDevices: d.distinctDevices,
        ...(d.scope === undefined ? {} : { scope: d.scope }),
      }));
    case 'silentFor':
      return wrap(SilentForm.safeParse(v), (d) => ({ form: 'silent', ...d.silentFor, ...(d.event === undefined ? {} : { events: d.event }) }));
    case 'all':
    case 'any': {
      const schema = z.strictObject({
        [form]: z.array(ConditionSchema, { error: 'must be a list of conditions' }).min(1, { message: 'must list at least one condition' }),
        within: Duration.optional(),
        scope: ScopeSchema.optional(),
        for: Duration.optional(),
      });
      return wrap(schema.safeParse(v), (raw) => {
        const d = raw as { within?: number; scope?: Scope; for?: number } & Record<string, unknown>;
        const conditions = d[form] as ConditionDef[];
        return {
          form,
          conditions,
          ...(d.within === undefined ? {} : { withinMs: d.within }),
          ...(d.scope === undefined ? {} : { scope: d.scope }),
          ...(d.for === undefined ? {} : { forMs: d.for }),
        };
      });
    }
    case 'not': {
      const schema = z.strictObject({ not: ConditionSchema, scope: ScopeSchema.optional(), for: Duration.optional() });
      return wrap(schema.safeParse(v), (d) => ({
        form: 'not',
        condition: d.not,
        ...(d.scope === undefined ? {} : { scope: d.scope }),
        ...(d.for === undefined ? {} : { forMs: d.for }),
      }));
    }
  }
}

// ---- rules and files -------------------------------------------------------------------------

const ID = /^[a-z0-9][a-z0-9_.:-]*$/;

export const MatchSchema = z.strictObject({
  kind: oneOrMany(z.enum(KINDS, { error: `must be one of ${KINDS.join(', ')}` })).optional(),
  model: oneOrMany(z.string().min(1)).optional(),
  exceptModel: oneOrMany(z.string().min(1)).optional(),
});
export type MatchDef = z.infer<typeof MatchSchema>;

export const RuleSchema = z.strictObject({
  id: z.string({ error: 'must be a rule id' }).max(64).regex(ID, { message: 'must be lower case letters, digits and . _ : - (e.g. electrical.leakage)' }),
  type: z.string({ error: 'must be an incident type' }).max(64).regex(ID, { message: 'must be lower case letters, digits and . _ : - (e.g. electrical.leakage)' }),
  severity: z.enum(SEVERITIES, { error: `must be one of ${SEVERITIES.join(', ')}` }),
  scope: ScopeSchema,
  description: z.string().min(1).max(200).optional(),
  match: MatchSchema.optional(),
  when: ConditionSchema,
  clear: ConditionSchema.optional(),
  /** A later file may replace an earlier file's rule of the same id only by saying so. */
  override: z.boolean({ error: 'must be true or false' }).default(false),
});
export type RuleDefinition = z.infer<typeof RuleSchema>;

export const RULE_FIELDS = 'id, type, severity, scope, description, match, when, clear, override';

/** The top level; each rule is parsed on its own so that one bad rule does not hide the others' errors. */
export const RuleFileSchema = z.strictObject({ rules: z.array(z.unknown(), { error: 'must be a list of rules' }) }, { error: 'a rule file is a mapping with a rules: list' });

export { relay as relayIssue };
