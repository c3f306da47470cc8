import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { z } from 'zod';
import { beforeAll, describe, expect, it } from 'vitest';
import type { CompiledRule } from '../../../rules/dsl/compile.js';
import { parseDuration } from '../../../rules/dsl/duration.js';
import { loadRules } from '../../../rules/dsl/load.js';
import type { RuleSignal } from '../../../rules/signals.js';
import { makeRig, T0, type DeviceSpec, type Sample } from './harness.js';

/*
 * The builtin rule pack against fixtures (fixtures/*.yaml, described in fixtures/README.md):
 * readings in time order on an injected clock, the signals they must give. A last test checks
 * that the fixtures cover every builtin rule: firing, not firing, clearing and repeating.
 */

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), 'fixtures');

const Duration = z.string().transform((s, ctx) => {
  const ms = s === '0s' ? 0 : parseDuration(s);
  if (ms === undefined) {
    ctx.addIssue({ code: 'custom', message: `not a duration: ${s}` });
    return z.NEVER;
  }
  return ms;
});

const Step = z.strictObject({
  at: Duration,
  every: Duration.optional(),
  until: Duration.optional(),
  device: z.string().optional(),
  metrics: z.record(z.string(), z.number()).optional(),
  state: z.record(z.string(), z.boolean()).optional(),
  events: z.array(z.string()).optional(),
});

const Expected = z
  .strictObject({
    raise: z.string().optional(),
    clear: z.string().optional(),
    at: Duration.optional(),
    every: Duration.optional(),
    until: Duration.optional(),
    key: z.string().optional(),
    devices: z.array(z.string()).optional(),
    severity: z.string().optional(),
    room: z.string().optional(),
    building: z.string().optional(),
  })
  .refine((e) => (e.raise === undefined) !== (e.clear === undefined), { message: 'one of raise or clear' });

type RawExpectation = z.infer<typeof Expected>;

/** `every`/`until` on an expectation: the same signal at each time. */
function expandExpected(list: RawExpectation[]): RawExpectation[] {
  return list.flatMap(({ every, until, ...e }) => {
    if (every === undefined || e.at === undefined) return [e];
    const out: RawExpectation[] = [];
    for (let t = e.at; t <= (until ?? e.at); t += every) out.push({ ...e, at: t });
    return out;
  });
}

const Fixture = z.strictObject({
  devices: z.array(
    z.strictObject({
      id: z.string(),
      model: z.string(),
      grid: z.string().optional(),
      building: z.string().optional(),
      room: z.string().optional(),
      setpoints: z.record(z.string(), z.number()).optional(),
      drill: z.boolean().optional(),
      heartbeatMs: z.number().optional(),
    }),
  ),
  cases: z.array(
    z.strictObject({
      name: z.string(),
      watch: z.array(z.string()).optional(),
      drillGrids: z.array(z.string()).optional(),
      steps: z.array(Step),
      expect: z.array(Expected).transform(expandExpected),
    }),
  ),
});
type Fixture = z.infer<typeof Fixture>;
type Case = Fixture['cases'][number];
type Expectation = RawExpectation;

function loadFixtures(): { file: string; fixture: Fixture }[] {
  return readdirSync(FIXTURES)
    .filter((f) => f.endsWith('.yaml'))
    .sort()
    .map((file) => {
      const parsed = Fixture.safeParse(parse(readFileSync(join(FIXTURES, file), 'utf8')));
      if (!parsed.success) throw new Error(`${file}: ${z.prettifyError(parsed.error)}`);
      return { file, fixture: parsed.data };
    });
}

interface Timed {
  readonly at: number;
  readonly device?: string;
  readonly sample: Sample;
}

/** Steps with `every` expanded, in time order (stable: same time, file order). */
function timeline(steps: Case['steps']): Timed[] {
  const out: Timed[] = [];
  for (const s of steps) {
    const sample: Sample = { ...(s.metrics ? { metrics: s.metrics } : {}), ...(s.state ? { state: s.state } : {}), ...(s.events ? { events: s.events } : {}) };
    const base = { ...(s.device !== undefined ? { device: s.device } : {}), sample };
    if (s.every === undefined) out.push({ at: s.at, ...base });
    else for (let t = s.at; t <= (s.until ?? s.at); t += s.every) out.push({ at: t, ...base });
  }
  return out.map((t, i) => ({ t, i })).sort((a, b) => a.t.at - b.t.at || a.i - b.i).map(({ t }) => t);
}

/** The actual signal projected onto the fields the expectation names (so the diff reads well). */
function project(s: RuleSignal, e: Expectation | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = s.kind === 'raise' ? { raise: s.ruleId } : { clear: s.ruleId };
  const want = e ?? { at: 0, key: '' };
  if (want.at !== undefined) out['at'] = s.at - T0;
  if (want.key !== undefined) out['key'] = s.scopeKey;
  if (s.kind === 'raise') {
    if (want.devices !== undefined) out['devices'] = [...s.deviceIds].sort();
    if (want.severity !== undefined) out['severity'] = s.severity;
    if (want.room !== undefined) out['room'] = s.place.room;
    if (want.building !== undefined) out['building'] = s.place.building;
  }
  return out;
}

function normalise(e: Expectation): Record<string, unknown> {
  const out: Record<string, unknown> = e.raise !== undefined ? { raise: e.raise } : { clear: e.clear };
  if (e.at !== undefined) out['at'] = e.at;
  if (e.key !== undefined) out['key'] = e.key;
  if (e.devices !== undefined) out['devices'] = [...e.devices].sort();
  if (e.severity !== undefined) out['severity'] = e.severity;
  if (e.room !== undefined) out['room'] = e.room;
  if (e.building !== undefined) out['building'] = e.building;
  return out;
}

function runCase(rules: readonly CompiledRule[], devices: readonly DeviceSpec[], c: Case): RuleSignal[] {
  const rig = makeRig({ rules, devices, deps: c.drillGrids ? { drillGrids: c.drillGrids } : {} });
  rig.engine.restore([]);
  for (const step of timeline(c.steps)) {
    if (step.device === undefined) rig.tickTo(T0 + step.at);
    else rig.send(step.device, T0 + step.at, step.sample);
  }
  return rig.signals.filter((s) => c.watch === undefined || c.watch.includes(s.ruleId));
}

const fixtures = loadFixtures();
let builtin: readonly CompiledRule[];

beforeAll(async () => {
  builtin = (await loadRules(['builtin'], process.cwd())).rules;
});

for (const { file, fixture } of fixtures) {
  describe(`fixtures/${file}`, () => {
    for (const c of fixture.cases) {
      it(c.name, () => {
        const got = runCase(builtin, fixture.devices, c);
        expect(got.map((s, i) => project(s, c.expect[i]))).toEqual(c.expect.map(normalise));
      });
    }
  });
}

describe('fixture coverage of the builtin pack', () => {
  it('every builtin rule is shown firing, not firing, repeating under one scope key, and clearing when it has a clear', () => {
    const raised = new Set<string>();
    const cleared = new Set<string>();
    const repeated = new Set<string>();
    const silent = new Set<string>();
    for (const { fixture } of fixtures) {
      for (const c of fixture.cases) {
        const byRuleKey = new Map<string, number>();
        for (const e of c.expect) {
          if (e.raise !== undefined) {
            raised.add(e.raise);
            const k = `${e.raise}\u0000${e.key ?? '?'}`;
            byRuleKey.set(k, (byRuleKey.get(k) ?? 0) + 1);
            if ((byRuleKey.get(k) ?? 0) >= 2 && e.key !== undefined) repeated.add(e.raise);
          }
          if (e.clear !== undefined) cleared.add(e.clear);
        }
        for (const w of c.watch ?? []) if (!c.expect.some((e) => e.raise === w)) silent.add(w);
      }
    }
    const ids = builtin.map((r) => r.id);
    expect(ids.filter((id) => !raised.has(id))).toEqual([]);
    expect(ids.filter((id) => !silent.has(id))).toEqual([]);
    expect(ids.filter((id) => !repeated.has(id))).toEqual([]);
    expect(builtin.filter((r) => r.clear && !cleared.has(r.id)).map((r) => r.id)).toEqual([]);
  });
});
