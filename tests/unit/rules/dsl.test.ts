import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseDuration as configParseDuration } from '../../../gateway/config/duration.js';
import type { CompiledNode } from '../../../rules/dsl/compile.js';
import { formatDuration, parseDuration, parseHeartbeatMultiple } from '../../../rules/dsl/duration.js';
import { formatRuleIssue, isRuleError, type RuleError } from '../../../rules/dsl/errors.js';
import { BUILTIN, checkRules, loadRules, type RuleSource } from '../../../rules/dsl/load.js';

/** Issues of one file, formatted as operators read them. */
function errorsOf(text: string, file = 'local.yaml', base: readonly RuleSource[] = []): string[] {
  return checkRules([{ file, text }], { base }).issues.map(formatRuleIssue);
}

/** One rule with the given `when` (YAML flow), in a file. */
function ruleWith(when: string, extra = ''): string {
  return `rules:\n  - id: test.rule\n    type: test\n    severity: minor\n    scope: device\n${extra}    when: ${when}\n`;
}

function compiled(text: string) {
  const checked = checkRules([{ file: 'local.yaml', text }]);
  expect(checked.issues.map(formatRuleIssue)).toEqual([]);
  const rule = checked.rules[0];
  if (!rule) throw new Error('no rule');
  return rule;
}

describe('durations', () => {
  const cases: [string, number | undefined][] = [
    ['500ms', 500],
    ['5s', 5_000],
    ['2m', 120_000],
    ['1h', 3_600_000],
    ['35d', 35 * 86_400_000],
    ['1h30m', 5_400_000],
    ['1.5s', 1_500],
    [' 60s ', 60_000],
    ['5', undefined],
    ['5 s', undefined],
    ['5sec', undefined],
    ['-5s', undefined],
    ['', undefined],
    ['0.5ms', undefined],
  ];
  it.each(cases)('%j → %j', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it('has the grammar of gridedge.yaml (rules/ may not import it, so it is held to it here)', () => {
    for (const [text] of cases) expect(parseDuration(text)).toBe(configParseDuration(text));
  });

  it('formats back into the largest exact unit', () => {
    expect([500, 5_000, 120_000, 3_600_000, 35 * 86_400_000, 1_500].map(formatDuration)).toEqual(['500ms', '5s', '2m', '1h', '35d', '1500ms']);
  });

  it('2x is a heartbeat multiple (silentFor only)', () => {
    expect(parseHeartbeatMultiple('2x')).toBe(2);
    expect(parseHeartbeatMultiple('1.5x')).toBe(1.5);
    expect(parseHeartbeatMultiple('0x')).toBeUndefined();
    expect(parseHeartbeatMultiple('2')).toBeUndefined();
  });

  it('a bare number, a bad unit and 2x outside silentFor are errors naming the field', () => {
    expect(errorsOf(ruleWith("{ metric: residual_ma, op: '>=', value: 300, for: 5 }"))).toEqual([
      'local.yaml: rule test.rule: when.for: a duration is a number and a unit: 500ms, 5s, 2m, 1h, 35d (a bare number has no unit) (line 6)',
    ]);
    expect(errorsOf(ruleWith("{ metric: residual_ma, op: '>=', value: 300, for: 5sec }"))[0]).toMatch(/^local\.yaml: rule test\.rule: when\.for: "5sec" is not a duration/);
    expect(errorsOf(ruleWith('{ count: fire_alarm, atLeast: 2, within: 2x }'))[0]).toMatch(/when\.within: "2x" is not a duration/);
    expect(errorsOf(ruleWith('{ silentFor: 2 }'))[0]).toMatch(/when\.silentFor: must be a duration .* or a multiple of the heartbeat \(2x\)/);
  });
});

describe('every condition form compiles', () => {
  it('event (one or a list), with the kinds that have it', () => {
    const one = compiled(ruleWith('{ event: fire_alarm }')).when;
    expect(one).toMatchObject({ form: 'event', events: ['fire_alarm'], level: false, kinds: ['smoke'] });
    const many = compiled(ruleWith('{ event: [battery_low, short_circuit] }')).when;
    expect(many).toMatchObject({ form: 'event', events: ['battery_low', 'short_circuit'], kinds: ['smoke', 'electrical', 'pager'] });
  });

  it('threshold: a number or a set-point with a default, every operator, a pattern, for', () => {
    for (const op of ['>', '>=', '<', '<=', '==', '!=']) {
      expect(compiled(ruleWith(`{ metric: residual_ma, op: '${op}', value: 300 }`)).when).toMatchObject({ form: 'threshold', op, value: 300, level: true });
    }
    const sp = compiled(ruleWith("{ metric: residual_ma, op: '>=', value: { setpoint: residual_ma, default: 300 }, for: 5s }")).when;
    expect(sp).toMatchObject({ value: { setpoint: 'residual_ma', default: 300 }, forMs: 5000, metrics: ['residual_ma'], of: 'any' });
    const wild = compiled(ruleWith("{ metric: 't*_c', of: all, op: '<', value: { setpoint: t_c, default: 65, factor: 0.9 } }")).when;
    expect(wild).toMatchObject({ metrics: ['t1_c', 't2_c', 't3_c', 't4_c'], pattern: 't*_c', of: 'all', kinds: ['electrical'], value: { factor: 0.9 } });
  });

  it('state, with is: false and for', () => {
    expect(compiled(ruleWith('{ state: short_circuit }')).when).toMatchObject({ form: 'state', flag: 'short_circuit', is: true, level: true });
    expect(compiled(ruleWith('{ state: fault, is: false, for: 10s }')).when).toMatchObject({ is: false, forMs: 10_000, kinds: ['smoke', 'electrical'] });
  });

  it('rise, count (with distinct devices and a scope), silentFor (2x, a duration, restricted to an event)', () => {
    expect(compiled(ruleWith("{ rise: 't*_c', by: 10, within: 60s }")).when).toMatchObject({ form: 'rise', by: 10, withinMs: 60_000, level: false });
    const count = compiled(ruleWith('{ count: fire_alarm, atLeast: 2, within: 2m, distinctDevices: true, scope: room }').replace('scope: device', 'scope: building')).when;
    expect(count).toMatchObject({ form: 'count', atLeast: 2, withinMs: 120_000, distinctDevices: true, scope: 'room' });
    expect(compiled(ruleWith('{ silentFor: 2x }')).when).toMatchObject({ form: 'silent', heartbeats: 2, level: true });
    expect(compiled(ruleWith('{ silentFor: 35d, event: test }')).when).toMatchObject({ form: 'silent', ms: 35 * 86_400_000, events: ['test'], kinds: ['pager'] });
  });

  it('all / any / not, with within, scope and for; nodes are numbered and classified', () => {
    const rule = compiled(
      `rules:
  - id: room.rule
    type: fire.confirmed
    severity: critical
    scope: room
    when:
      any:
        - { count: fire_alarm, atLeast: 2, distinctDevices: true, within: 2m }
        - all: [{ state: smoke }, { rise: 't*_c', by: 10, within: 60s }]
          within: 2m
        - all: [{ metric: voltage_v, op: '>', value: 264 }, { not: { state: tripped } }]
          scope: device
          for: 10s
`,
    );
    const when = rule.when as Extract<CompiledNode, { form: 'all' | 'any' }>;
    expect(when).toMatchObject({ form: 'any', scope: 'room', level: false });
    expect(when.children.map((c) => [c.id, c.form, c.scope, c.level])).toEqual([
      [1, 'count', 'room', false],
      [2, 'all', 'room', false],
      [5, 'all', 'device', true],
    ]);
    expect(when.children[2]).toMatchObject({ forMs: 10_000 });
    expect(rule.match.kinds).toEqual(['smoke', 'electrical']);
    expect(rule.interest).toMatchObject({ events: ['fire_alarm'], states: ['smoke', 'tripped'], everyReading: false });
    expect(rule.timed).toBe(true);
    expect(Object.isFrozen(rule.when)).toBe(true);
  });

  it('match narrows kinds and models; the summary says the condition in words', () => {
    const rule = compiled(ruleWith('{ silentFor: 2x }', '    match: { kind: [smoke, pager], exceptModel: pager-rf }\n'));
    expect(rule.match).toEqual({ kinds: ['smoke', 'pager'], exceptModels: ['pager-rf'] });
    expect(rule.summary).toBe('silent for 2× heartbeat');
    expect(compiled(ruleWith('{ silentFor: 35d, event: test }', '    match: { model: pager-rf }\n')).match).toEqual({ kinds: ['pager'], models: ['pager-rf'] });
    expect(compiled(ruleWith("{ metric: residual_ma, op: '>=', value: 300, for: 5s }")).summary).toBe('residual_ma >= 300 for 5s');
  });
});

describe('errors name the file, the rule id and the field path', () => {
  it('a bad operator', () => {
    const text = ruleWith("{ metric: residual_ma, op: '=>', value: 300 }").replace('test.rule', 'electrical.leakage');
    expect(errorsOf(text)).toEqual(['local.yaml: rule electrical.leakage: when.op: must be one of > >= < <= == != (line 6)']);
  });

  it('a deeply nested or alias-bomb file is a YAML issue, not a crash (issue 8: bad input)', () => {
    expect(errorsOf(`rules: ${'['.repeat(5_000)}`)).toEqual(['local.yaml: not valid YAML: nested deeper than 64 levels (line 1)']);
    expect(errorsOf('a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n')[0]).toMatch(/^local\.yaml: not valid YAML: .*alias/i);
  });

  it('an unquoted operator: YAML reads >= as a block scalar and != as a tag; both say to quote it', () => {
    expect(errorsOf(ruleWith('{ metric: residual_ma, op: >=, value: 300 }'))[0]).toMatch(/^local\.yaml: not valid YAML: .* — operators must be quoted in YAML: op: '>=' \(line 6\)$/);
    const tag = 'rules:\n  - id: t\n    type: t\n    severity: minor\n    scope: device\n    when:\n      metric: residual_ma\n      op: !=\n      value: 300\n';
    expect(errorsOf(tag)).toEqual([
      "local.yaml: rule t: when.op: must be one of > >= < <= == != (quote it in YAML: op: '>=' — unquoted, ! and > are YAML syntax) (line 8)",
    ]);
  });

  it('paths go into nested conditions', () => {
    const text = ruleWith("{ all: [{ event: fire_alarm }, { any: [{ state: smoke }, { metric: nope_c, op: '>', value: 1 }] }], within: 1m }");
    expect(errorsOf(text)).toEqual([
      'local.yaml: rule test.rule: when.all[1].any[1].metric: unknown metric "nope_c" of smoke, electrical, pager (smoke: battery_pct rssi_dbm; electrical: voltage_v current_a power_w power_factor frequency_hz energy_kwh residual_ma t1_c t2_c t3_c t4_c arc_count; pager: battery_pct rssi_dbm) (line 6)',
    ]);
  });

  it('unknown metrics, events and state flags are errors, judged against the rule’s kinds', () => {
    expect(errorsOf(ruleWith('{ event: fire_alrm }'))[0]).toMatch(/^local\.yaml: rule test\.rule: when\.event: unknown event "fire_alrm": not an event of smoke, electrical, pager \(/);
    expect(errorsOf(ruleWith('{ event: fire_alarm }', '    match: { kind: electrical }\n'))[0]).toMatch(/when\.event: unknown event "fire_alarm": not an event of electrical \(electrical: leakage/);
    expect(errorsOf(ruleWith("{ metric: residual_ma, op: '>', value: 1 }", '    match: { kind: smoke }\n'))[0]).toMatch(/when\.metric: unknown metric "residual_ma" of smoke \(smoke: battery_pct rssi_dbm\)/);
    expect(errorsOf(ruleWith("{ metric: 'x*_c', op: '>', value: 1 }"))[0]).toMatch(/when\.metric: metric pattern "x\*_c" matches no metric of/);
    expect(errorsOf(ruleWith('{ state: smokey }'))[0]).toMatch(/when\.state: unknown state flag "smokey": not a state flag of/);
    expect(errorsOf(ruleWith('{ event: [sos, nope] }'))[0]).toMatch(/when\.event\[1\]: unknown event "nope"/);
    expect(errorsOf(ruleWith('{ silentFor: 2x, event: tset }'))[0]).toMatch(/when\.event: unknown event "tset"/);
    expect(errorsOf(ruleWith('{ count: [fire_alarm, smoke], atLeast: 2, within: 1m }'))[0]).toMatch(/when\.count\[1\]: unknown event "smoke"/);
  });

  it('unknown models, and a model of another kind than the match says', () => {
    expect(errorsOf(ruleWith('{ event: sos }', '    match: { model: pager-xx }\n'))[0]).toMatch(/^local\.yaml: rule test\.rule: match\.model: unknown model "pager-xx" \(models: /);
    expect(errorsOf(ruleWith('{ event: sos }', '    match: { kind: smoke, model: pager-rf }\n'))[0]).toMatch(/match\.model: model pager-rf is pager, not smoke/);
  });

  it('a self-test event cannot raise', () => {
    expect(errorsOf(ruleWith('{ event: test }'))[0]).toMatch(/when\.event: "test" is a self-test event: a self-test never raises/);
    expect(errorsOf(ruleWith('{ event: sos }').replace('    when:', '    clear: { event: test }\n    when:'))).toEqual([]);
  });

  it('conditions that cannot be evaluated: for on an instant, not of an instant, a scope wider than the rule', () => {
    expect(errorsOf(ruleWith('{ event: sos, for: 5s }'))[0]).toBe('local.yaml: rule test.rule: when.for: unknown field (this has: event) (line 6)');
    expect(errorsOf(ruleWith("{ any: [{ event: over_voltage }, { metric: voltage_v, op: '>', value: 264 }], for: 10s }"))[0]).toMatch(
      /when\.for: for needs every condition of any to last/,
    );
    expect(errorsOf(ruleWith('{ all: [{ state: smoke }], within: 1m, for: 10s }'))[0]).toMatch(/when\.for: for and within do not go together/);
    expect(errorsOf(ruleWith('{ not: { event: sos } }'))[0]).toMatch(/when\.not: not needs a condition that lasts/);
    expect(errorsOf(ruleWith('{ all: [{ state: smoke }], scope: room }'))[0]).toMatch(/when\.scope: room is wider than the enclosing scope device/);
    expect(errorsOf(ruleWith('{ count: sos, atLeast: 0, within: 1m }'))[0]).toMatch(/when\.atLeast: must be at least 1/);
    expect(errorsOf(ruleWith("{ rise: 't*_c', by: 0, within: 1m }"))[0]).toMatch(/when\.by: must be more than 0/);
  });

  it('a condition with no form or two forms', () => {
    expect(errorsOf(ruleWith('{ within: 1m }'))[0]).toMatch(/when: must be a condition: a mapping with one of event, metric, state/);
    expect(errorsOf(ruleWith("{ event: sos, metric: residual_ma, op: '>', value: 1 }"))[0]).toMatch(/when: a condition has one of .*, not several \(found event and metric\): combine them with all: or any:/);
  });

  it('rule fields: missing, unknown, wrong values; a rule without a usable id is named by its index', () => {
    expect(errorsOf('rules:\n  - id: x\n    type: x\n    severity: high\n    scope: flat\n    when: { event: sos }\n    whenn: 1\n')).toEqual([
      'local.yaml: rule x: severity: must be one of critical, major, minor, info (line 4)',
      'local.yaml: rule x: scope: must be one of device, room, building, grid (line 5)',
      'local.yaml: rule x: whenn: unknown field (this has: id, type, severity, scope, description, match, when, clear, override) (line 7)',
    ]);
    expect(errorsOf('rules:\n  - { id: ok, type: ok, severity: info, scope: device, when: { event: sos } }\n  - { type: x, severity: info, scope: device, when: { event: sos } }\n')).toEqual([
      'local.yaml: rules[1]: id: must be a rule id (line 3)',
    ]);
    expect(errorsOf('rules:\n  - { id: Bad Id, type: x, severity: info, scope: device, when: { event: sos } }\n')[0]).toMatch(/^local\.yaml: rules\[0\]: id: must be lower case/);
    expect(errorsOf('nothing: here\n')[0]).toMatch(/^local\.yaml: rules: must be a list of rules/);
    expect(errorsOf('')[0]).toMatch(/^local\.yaml: a rule file is a mapping with a rules: list/);
  });

  it('every problem in a file is reported, not just the first', () => {
    const text = `rules:
  - { id: a, type: a, severity: minor, scope: device, when: { event: nope } }
  - { id: b, type: b, severity: minor, scope: device, when: { metric: residual_ma, op: '~', value: 1 } }
  - { id: c, type: c, severity: minor, scope: device, when: { event: sos } }
`;
    const errors = errorsOf(text);
    expect(errors).toHaveLength(2);
    expect(errors[0]).toMatch(/^local\.yaml: rule a: when\.event: unknown event "nope".*\(line 2\)$/);
    expect(errors[1]).toMatch(/^local\.yaml: rule b: when\.op: must be one of.*\(line 3\)$/);
    expect(checkRules([{ file: 'local.yaml', text }]).rules.map((r) => r.id)).toEqual(['c']);
  });
});

describe('ids across files: duplicates and overrides', () => {
  const base: RuleSource[] = [{ file: BUILTIN, text: 'rules:\n  - { id: sos, type: sos, severity: critical, scope: device, when: { event: sos } }\n' }];

  it('the same id twice in a file is an error', () => {
    const text = 'rules:\n  - { id: x, type: x, severity: info, scope: device, when: { event: sos } }\n  - { id: x, type: x, severity: info, scope: device, when: { event: fall } }\n';
    expect(errorsOf(text)).toEqual(['local.yaml: rule x: id: duplicate rule id: rules[0] of this file has it too']);
  });

  it('a builtin id in a later file is an error unless it says override: true', () => {
    const clash = 'rules:\n  - { id: sos, type: sos, severity: major, scope: device, when: { event: sos } }\n';
    expect(errorsOf(clash, 'local.yaml', base)).toEqual(['local.yaml: rule sos: id: duplicate rule id: builtin already has a rule sos; to replace it, add override: true']);
    const checked = checkRules([{ file: 'local.yaml', text: clash.replace('scope: device,', 'scope: device, override: true,') }], { base });
    expect(checked.issues).toEqual([]);
    expect(checked.rules.map((r) => [r.id, r.severity, r.source, r.overrides])).toEqual([['sos', 'major', 'local.yaml', true]]);
    expect(checked.files).toEqual([{ file: 'local.yaml', rules: 1, overrides: 1, issues: 0 }]);
  });

  it('override: true with nothing to override is an error (a typo would leave the builtin rule in force)', () => {
    const typo = 'rules:\n  - { id: s0s, override: true, type: sos, severity: major, scope: device, when: { event: sos } }\n';
    expect(errorsOf(typo, 'local.yaml', base)).toEqual([
      'local.yaml: rule s0s: override: override: true, but no earlier rule file has this id (check the id, and that the file comes after the one it overrides in rules:)',
    ]);
  });

  it('an override keeps its place in the load order', () => {
    const two = [
      { file: 'a.yaml', text: 'rules:\n  - { id: one, type: x, severity: info, scope: device, when: { event: sos } }\n  - { id: two, type: x, severity: info, scope: device, when: { event: fall } }\n' },
      { file: 'b.yaml', text: 'rules:\n  - { id: three, type: x, severity: info, scope: device, when: { event: sos } }\n  - { id: one, override: true, type: y, severity: info, scope: device, when: { event: fire_call } }\n' },
    ];
    expect(checkRules(two).rules.map((r) => `${r.id}:${r.type}`)).toEqual(['one:y', 'two:x', 'three:x']);
  });
});

describe('loadRules', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'gridedge-rules-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('loads builtin and a local file relative to the base directory', async () => {
    await writeFile(join(dir, 'local.yaml'), 'rules:\n  - { id: local.extra, type: x, severity: info, scope: grid, when: { count: sos, atLeast: 3, within: 10m } }\n');
    const loaded = await loadRules([BUILTIN, './local.yaml'], dir);
    expect(loaded.rules.at(-1)?.id).toBe('local.extra');
    expect(loaded.rules.find((r) => r.id === 'electrical.leakage')?.source).toBe(BUILTIN);
    expect(loaded.files.map((f) => f.file)).toEqual([BUILTIN, './local.yaml']);
  });

  it('throws one RuleError listing every problem of every file', async () => {
    await writeFile(join(dir, 'bad.yaml'), 'rules:\n  - { id: a, type: a, severity: minor, scope: device, when: { event: nope } }\n');
    const err = await loadRules([BUILTIN, join(dir, 'bad.yaml'), './missing.yaml'], dir, { display: (p) => p.replace(`${dir}/`, '') }).catch((e: unknown) => e);
    expect(isRuleError(err)).toBe(true);
    const issues = (err as RuleError).issues;
    expect(issues.map((i) => i.code)).toEqual(['RULE_ERR_READ', 'RULE_ERR_COMPILE']);
    expect(issues.map(formatRuleIssue)[0]).toBe('missing.yaml: cannot read: no such file');
    expect((err as RuleError).message).toContain('bad.yaml: rule a: when.event: unknown event "nope"');
  });

  it('the builtin pack is valid and every rule in it has a type, severity and scope', async () => {
    const { rules } = await loadRules([BUILTIN], dir);
    expect(rules.length).toBeGreaterThanOrEqual(20);
    for (const r of rules) expect(r.source).toBe(BUILTIN);
    expect(rules.find((r) => r.id === 'electrical.leakage')).toMatchObject({ severity: 'major', scope: 'device', timed: true });
  });
});
