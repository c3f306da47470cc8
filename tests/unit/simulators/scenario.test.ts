import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { EncodeSample } from '../../../devices/model.js';
import type { SimClock } from '../../../simulators/mqtt-device.js';
import {
  checkScenario,
  createRecordingSerialDriver,
  parseScenario,
  parseScenarioDuration,
  runScenario,
  scenarioDeviceIds,
  ScenarioError,
  type ScenarioIssue,
  type ScenarioSender,
  type StepResult,
} from '../../../simulators/scenario.js';
import { parseSiteCsv, siteIndex } from '../../../simulators/site.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const EXAMPLE = join(ROOT, 'examples/donghuashi/scenario.yaml');

/** The scenario's rows of the example site, as scripts/make-example-site.mjs writes them (secrets left out). */
const SCENARIO_SITE = `id,model,grid,building,room,secret,bus,address,rf,heartbeat,resident_name,resident_phone
ELC-0701-B13,elec-ers1,110101013001002,7,B1-3,,rs485-1,1,,,,
SMK-0701-B13,smoke-json,110101013001002,7,B1-3,scrypt$x,,,,,,
CTW-0701-B13,smoke-ctw,110101013001002,7,B1-3,scrypt$x,,,,4h,,
RFP-0501-302,pager-rf,110101013001002,5,302,,rf-1,,5A3C1,,,
PGR-0501-302,pager-json,110101013001002,5,302,scrypt$x,,,,,,
`;

function issuesOf(text: string): ScenarioIssue[] {
  try {
    parseScenario(text, 'bad.yaml');
  } catch (err) {
    if (err instanceof ScenarioError) return [...err.issues];
    throw err;
  }
  throw new Error('expected the scenario to be refused');
}

describe('scenario durations', () => {
  it('reads the config grammar', () => {
    expect(parseScenarioDuration('20s')).toBe(20_000);
    expect(parseScenarioDuration('1m30s')).toBe(90_000);
    expect(parseScenarioDuration('500ms')).toBe(500);
    expect(parseScenarioDuration('1.5s')).toBe(1_500);
    expect(parseScenarioDuration('20')).toBeUndefined();
    expect(parseScenarioDuration('soon')).toBeUndefined();
  });
});

describe('the example scenario (SPEC §10)', () => {
  const scenario = parseScenario(readFileSync(EXAMPLE, 'utf8'), 'scenario.yaml');

  it('is valid and in play order', () => {
    expect(scenario.loop).toBe(false);
    const ats = scenario.steps.map((s) => s.at);
    expect(ats).toEqual([...ats].sort((a, b) => a - b));
    expect(scenarioDeviceIds(scenario).sort()).toEqual(['CTW-0701-B13', 'PGR-0501-302', 'SMK-0701-B13']);
  });

  it('sets the short-circuit bit with a ≥ 10 °C rise of T1 within 60 s, and the smoke alarm 20 s later', () => {
    const meter = scenario.steps.filter((s) => s.kind === 'meter');
    const short = meter.find((s) => s.sample.state?.short_circuit === true);
    expect(short).toBeDefined();
    const smoke = scenario.steps.find((s) => s.kind === 'mqtt' && s.device === 'SMK-0701-B13' && s.send.events?.includes('fire_alarm'));
    expect(smoke && short && smoke.at - short.at).toBe(20_000);
    const t1 = meter.flatMap((s) => (s.sample.metrics?.t1_c === undefined ? [] : [{ at: s.at, t: s.sample.metrics.t1_c }]));
    const rise = t1.some((a) => t1.some((b) => b.at > a.at && b.at - a.at <= 60_000 && b.t - a.t >= 10));
    expect(rise).toBe(true);
    // The temperature has risen by the time the detector alarms (fire.confirmed needs both within 2 min).
    const before = t1.filter((x) => smoke !== undefined && x.at <= smoke.at);
    expect(Math.max(...before.map((x) => x.t)) - Math.min(...before.map((x) => x.t))).toBeGreaterThanOrEqual(10);
  });

  it('presses SOS on the pager-rf of building 5 room 302', () => {
    const sos = scenario.steps.find((s) => s.kind === 'rf');
    expect(sos).toMatchObject({ kind: 'rf', rf: { bus: 'rf-1', id: '5A3C1' }, key: 0x1, keyName: 'sos' });
  });

  it('names only devices and values the example site has', () => {
    expect(checkScenario(scenario, siteIndex(parseSiteCsv(SCENARIO_SITE)))).toEqual([]);
  });

  const csv = join(ROOT, 'examples/donghuashi/devices.csv');
  it.skipIf(!existsSync(csv))('matches the committed examples/donghuashi/devices.csv', () => {
    expect(checkScenario(scenario, siteIndex(parseSiteCsv(readFileSync(csv, 'utf8'), csv)))).toEqual([]);
  });

  it('is refused against a site without those devices', () => {
    const other = siteIndex(parseSiteCsv('id,model\nSMK-9,smoke-json\n'));
    const paths = checkScenario(scenario, other).map((i) => i.path);
    expect(paths).toContain('steps[0].meter');
    expect(paths.some((p) => p.endsWith('.device'))).toBe(true);
  });
});

describe('scenario schema errors name the field', () => {
  it('an unknown field, with its line', () => {
    const issues = issuesOf('steps:\n  - at: 1s\n    device: SMK-1\n    sned: { events: [fire_alarm] }\n');
    expect(issues).toContainEqual({ file: 'bad.yaml', line: 4, path: 'steps[0].sned', message: 'unknown field' });
    expect(issues.map((i) => i.path)).toContain('steps[0].send');
  });

  it('a duration without a unit', () => {
    const [issue] = issuesOf('steps:\n  - { at: 20, device: SMK-1, send: {} }\n');
    expect(issue?.path).toBe('steps[0].at');
    expect(issue?.message).toMatch(/no unit/);
  });

  it('a bad rf key and id', () => {
    const issues = issuesOf('steps:\n  - at: 1s\n    rf: { bus: rf-1, id: 5A3C, key: help }\n');
    expect(issues.map((i) => i.path).sort()).toEqual(['steps[0].rf.id', 'steps[0].rf.key']);
    expect(issues.find((i) => i.path === 'steps[0].rf.key')?.message).toMatch(/sos/);
    expect(issues.every((i) => i.line === 3)).toBe(true);
  });

  it('a step with two targets, or none', () => {
    expect(issuesOf('steps:\n  - { at: 1s, device: SMK-1, send: {}, rf: { bus: rf-1, id: 5A3C1, key: sos } }\n').map((i) => i.path)).toEqual(['steps[0].rf']);
    expect(issuesOf('steps:\n  - { at: 1s }\n')).toMatchObject([{ path: 'steps[0]', message: expect.stringMatching(/device, meter or rf/) as unknown }]);
  });

  it('fields that do not belong to the kind of step, and missing ones', () => {
    const issues = issuesOf('steps:\n  - { at: 1s, meter: { bus: rs485-1, address: 1 }, send: {} }\n  - { at: 2s, device: SMK-1, qos: 2, send: {} }\n');
    expect(issues.map((i) => i.path)).toEqual(['steps[0].send', 'steps[0].sample', 'steps[1].qos']);
  });

  it('types inside a sample and a meter address out of range', () => {
    const issues = issuesOf('steps:\n  - { at: 1s, device: SMK-1, send: { events: fire_alarm, state: { smoke: "yes" } } }\n  - { at: 1s, meter: { bus: b, address: 300 }, sample: {} }\n');
    expect(issues.map((i) => i.path).sort()).toEqual(['steps[0].send.events', 'steps[0].send.state.smoke', 'steps[1].meter.address']);
  });

  it('a missing or empty step list, an unknown top-level key, a loop that cannot advance', () => {
    expect(issuesOf('name: x\n').map((i) => [i.path, i.message])).toEqual([['steps', 'required']]);
    expect(issuesOf('steps: []\n').map((i) => i.path)).toEqual(['steps']);
    expect(issuesOf('stpes: []\nsteps: [{ at: 0s, device: A, send: {} }]\n').map((i) => i.path)).toEqual(['stpes']);
    expect(issuesOf('loop: true\nsteps: [{ at: 0s, device: A, send: {} }]\n').map((i) => i.path)).toEqual(['period']);
    expect(issuesOf('period: 1s\nsteps: [{ at: 5s, device: A, send: {} }]\n').map((i) => i.path)).toEqual(['period']);
  });

  it('a deeply nested or alias-bomb scenario is a YAML issue, not a crash (issue 8: bad input)', () => {
    expect(issuesOf(`steps: ${'['.repeat(5_000)}`)).toEqual([{ file: 'bad.yaml', path: '', message: 'not valid YAML: nested deeper than 64 levels', line: 1 }]);
    expect(issuesOf('a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n')[0]?.message).toMatch(/not valid YAML: .*alias/i);
  });

  it('YAML syntax errors, with their line', () => {
    const [issue] = issuesOf('steps:\n  - { at: 1s, device: [ }\n');
    expect(issue?.message).toMatch(/not valid YAML/);
    expect(issue?.line).toBe(2);
  });

  it('device events the model cannot send (checked against the site)', () => {
    const scenario = parseScenario('steps:\n  - { at: 1s, device: PGR-0501-302, send: { events: [fire_alarm], state: { smoke: true } } }\n');
    const issues = checkScenario(scenario, siteIndex(parseSiteCsv(SCENARIO_SITE)));
    expect(issues.map((i) => i.path)).toEqual(['steps[0].send.state.smoke', 'steps[0].send.events[0]']);
  });
});

// ---- the runner, on a clock the test moves --------------------------------------------------

interface Timer {
  at: number;
  seq: number;
  fn: () => void;
}

function manualClock(start = 1_000_000, lateMs = 0) {
  let now = start;
  let seq = 0;
  const timers = new Set<Timer>();
  const clock: SimClock = {
    now: () => now,
    setTimeout(fn, ms) {
      const t = { at: now + Math.max(0, ms) + lateMs, seq: seq++, fn };
      timers.add(t);
      return t;
    },
    clearTimeout(handle) {
      timers.delete(handle as Timer);
    },
  };
  const flush = () => new Promise<void>((r) => setImmediate(r));
  return {
    clock,
    pending: () => timers.size,
    /** Moves time forward, firing due timers in order and letting promise chains run between them. */
    async advance(ms: number) {
      const target = now + ms;
      await flush();
      for (;;) {
        const next = [...timers].filter((t) => t.at <= target).sort((a, b) => a.at - b.at || a.seq - b.seq)[0];
        if (!next) break;
        timers.delete(next);
        now = next.at;
        next.fn();
        await flush();
      }
      now = target;
      await flush();
    },
  };
}

function recordingSender(log: { at: number; device: string; sample: EncodeSample }[], clock: SimClock, device: string, fail = false): ScenarioSender {
  return {
    send(sample) {
      log.push({ at: clock.now(), device, sample });
      return fail ? Promise.reject(new Error('broker gone')) : Promise.resolve();
    },
  };
}

describe('runScenario', () => {
  const TEXT = `
steps:
  - { at: 10s, device: B, send: { events: [fire_alarm] } }
  - { at: 0s, meter: { bus: rs485-1, address: 1 }, sample: { metrics: { t1_c: 20, voltage_v: 220 }, state: { short_circuit: false } } }
  - { at: 0s, device: A, send: { events: [heartbeat] } }
  - { at: 5s, meter: { bus: rs485-1, address: 1 }, sample: { metrics: { t1_c: 35 }, state: { short_circuit: true } } }
  - { at: 10s, rf: { bus: rf-1, id: 5a3c1, key: sos } }
`;

  it('plays steps at their times, by time then file order, without sleeping', async () => {
    const m = manualClock();
    const t0 = m.clock.now();
    const sent: { at: number; device: string; sample: EncodeSample }[] = [];
    const senders = new Map([
      ['A', recordingSender(sent, m.clock, 'A')],
      ['B', recordingSender(sent, m.clock, 'B')],
    ]);
    const serial = createRecordingSerialDriver(m.clock);
    const order: string[] = [];
    const run = runScenario(parseScenario(TEXT), {
      mqtt: (id) => senders.get(id),
      serial,
      clock: m.clock,
      onStep: (r) => order.push(`${r.scheduledAt}:${r.step.kind}:${r.step.index}`),
    });

    await m.advance(0);
    // Both 0s steps ran at once, the meter first (file order), nothing else yet.
    expect(order).toEqual(['0:meter:1', '0:mqtt:2']);
    expect(serial.calls).toEqual([{ at: t0, kind: 'meter', target: { bus: 'rs485-1', address: 1 }, sample: { metrics: { t1_c: 20, voltage_v: 220 }, state: { short_circuit: false } } }]);
    expect(sent).toEqual([{ at: t0, device: 'A', sample: { events: ['heartbeat'] } }]);

    await m.advance(4_999);
    expect(order).toHaveLength(2);
    await m.advance(1);
    // The second meter step changes only what it names: voltage stays.
    expect(serial.calls[1]).toEqual({ at: t0 + 5_000, kind: 'meter', target: { bus: 'rs485-1', address: 1 }, sample: { metrics: { t1_c: 35, voltage_v: 220 }, state: { short_circuit: true } } });

    await m.advance(5_000);
    const report = await run;
    expect(order).toEqual(['0:meter:1', '0:mqtt:2', '5000:meter:3', '10000:mqtt:0', '10000:rf:4']);
    expect(sent[1]).toEqual({ at: t0 + 10_000, device: 'B', sample: { events: ['fire_alarm'] } });
    expect(serial.calls[2]).toEqual({ at: t0 + 10_000, kind: 'rf', target: { bus: 'rf-1', id: '5A3C1' }, key: 0x1 });
    expect(report).toEqual({ executed: 5, failed: [], cycles: 1, aborted: false, maxLateMs: 0 });
    expect(m.pending()).toBe(0);
  });

  it('does not wait for one step to be acknowledged before starting the next', async () => {
    const m = manualClock();
    const releases: (() => void)[] = [];
    const started: number[] = [];
    const slow: ScenarioSender = {
      send() {
        started.push(m.clock.now());
        return new Promise<void>((r) => releases.push(r));
      },
    };
    const results: StepResult[] = [];
    const run = runScenario(parseScenario('steps:\n  - { at: 0s, device: A, send: {} }\n  - { at: 1s, device: A, send: {} }\n'), {
      mqtt: () => slow,
      clock: m.clock,
      onStep: (r) => results.push(r),
    });
    await m.advance(1_000);
    expect(started).toEqual([1_000_000, 1_001_000]);
    expect(results).toHaveLength(0);
    // Acknowledged in the other order: still reported in start order.
    releases[1]?.();
    await m.advance(0);
    expect(results).toHaveLength(0);
    releases[0]?.();
    const report = await run;
    expect(report.executed).toBe(2);
    expect(results.map((r) => r.scheduledAt)).toEqual([0, 1_000]);
  });

  it('reports a failed step and goes on', async () => {
    const m = manualClock();
    const sent: { at: number; device: string; sample: EncodeSample }[] = [];
    const run = runScenario(parseScenario('steps:\n  - { at: 0s, device: BAD, send: {} }\n  - { at: 1s, device: OK, send: {} }\n'), {
      mqtt: (id) => recordingSender(sent, m.clock, id, id === 'BAD'),
      clock: m.clock,
    });
    await m.advance(1_000);
    const report = await run;
    expect(sent.map((s) => s.device)).toEqual(['BAD', 'OK']);
    expect(report.failed).toHaveLength(1);
    expect(report.failed[0]).toMatchObject({ error: 'broker gone', scheduledAt: 0 });
  });

  it('loops every period until the cycle limit or an abort', async () => {
    const m = manualClock();
    const sent: { at: number; device: string; sample: EncodeSample }[] = [];
    const scenario = parseScenario('loop: true\nperiod: 10s\nsteps:\n  - { at: 0s, device: A, send: {} }\n  - { at: 4s, device: A, send: {} }\n');
    const run = runScenario(scenario, { mqtt: (id) => recordingSender(sent, m.clock, id), clock: m.clock, cycles: 3 });
    await m.advance(60_000);
    const report = await run;
    expect(sent.map((s) => s.at - 1_000_000)).toEqual([0, 4_000, 10_000, 14_000, 20_000, 24_000]);
    expect(report).toMatchObject({ executed: 6, cycles: 3, aborted: false });

    const controller = new AbortController();
    const sent2: typeof sent = [];
    const m2 = manualClock();
    const endless = runScenario(scenario, { mqtt: (id) => recordingSender(sent2, m2.clock, id), clock: m2.clock, signal: controller.signal });
    await m2.advance(25_000);
    controller.abort();
    const report2 = await endless;
    // Aborted while waiting for the 4th cycle's first step.
    expect(report2).toMatchObject({ executed: 6, cycles: 3, aborted: true });
    expect(m2.pending()).toBe(0);
  });

  it('measures how late a step started, and keeps to the schedule after it', async () => {
    // Timers that fire 30 ms late, as on a busy event loop.
    const m = manualClock(0, 30);
    const sent: { at: number; device: string; sample: EncodeSample }[] = [];
    const run = runScenario(parseScenario('steps:\n  - { at: 1s, device: A, send: {} }\n  - { at: 2s, device: A, send: {} }\n'), {
      mqtt: (id) => recordingSender(sent, m.clock, id),
      clock: m.clock,
    });
    await m.advance(3_000);
    const report = await run;
    expect(report.maxLateMs).toBe(30);
    // The second step is due 2 s after the start, not 1 s after the late first one.
    expect(sent.map((s) => s.at)).toEqual([1_030, 2_030]);
  });

  it('refuses to start without a simulator for every device or a serial driver for serial steps', async () => {
    const scenario = parseScenario(TEXT);
    await expect(runScenario(scenario, { mqtt: () => undefined })).rejects.toThrow(/steps\[0\]\.device: no simulator for B[\s\S]*steps\[1\]\.meter: no serial driver/);
  });
});
