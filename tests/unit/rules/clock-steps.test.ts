import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { CompiledRule } from '../../../rules/dsl/compile.js';
import { checkRules } from '../../../rules/dsl/load.js';
import { createRuleEngine, type DeviceLastSeen, type RuleEngine } from '../../../rules/engine/engine.js';
import { createIncidentManager, openIncidentStore, type EscalationDelays, type Incident, type IncidentManager, type IncidentStore } from '../../../rules/incidents/index.js';
import type { RuleSignal } from '../../../rules/signals.js';
import { brief, deviceRecord, GRID, heartbeatOf, memoryLogger, MemoryState, readingOf, T0, type Sample } from './harness.js';

// docs/SPEC-NOTES.md "Clock steps": the wall clock may be stepped (NTP) by an hour either way;
// durations — silence, `for`, escalation, the SOS cancel window — keep to real elapsed time.
// The clock double moves wall time two ways: `run` (real time passes, the gateway ticks every
// 250 ms) and `step` (the wall clock jumps; `steps()` counts it, as gateway/wall-clock.ts does).

const HOUR = 3_600_000;
const HEARTBEAT = 60_000; // the detectors' own heartbeat: offline after 2 min of silence

function rulesOf(text: string): CompiledRule[] {
  const checked = checkRules([{ file: 'test.yaml', text }]);
  if (checked.issues.length > 0) throw new Error(JSON.stringify(checked.issues));
  return [...checked.rules];
}

const RULES = rulesOf(`rules:
  - id: offline
    type: device.offline
    severity: minor
    scope: device
    match: { kind: smoke }
    when: { silentFor: 2x }
    clear: { not: { silentFor: 2x } }
  - id: held
    type: device.battery_low
    severity: minor
    scope: device
    match: { kind: smoke }
    when: { state: battery_low, for: 10m }
  - id: fire
    type: fire
    severity: critical
    scope: device
    match: { kind: smoke }
    when: { event: fire_alarm }
`);

const SMK1 = deviceRecord({ id: 'SMK-1', model: 'smoke-json', heartbeatMs: HEARTBEAT });
const SMK2 = deviceRecord({ id: 'SMK-2', model: 'smoke-json', heartbeatMs: HEARTBEAT });
const DEVICES = new Map([SMK1, SMK2].map((d) => [d.id, d]));
const LOW: Sample = { events: ['heartbeat'], state: { battery_low: true } };
const OK: Sample = { events: ['heartbeat'], state: { battery_low: false } };

/** Wall time that real time moves and NTP steps. */
interface StepClock {
  wall: number;
  steps: number;
}

interface EngineRig {
  readonly engine: RuleEngine;
  readonly signals: RuleSignal[];
  readonly clock: StepClock;
  readonly state: MemoryState;
  /** Real time passes: the wall clock advances and the gateway ticks every 250 ms. */
  run(ms: number): void;
  /** The wall clock is stepped (no real time passes). */
  step(ms: number): void;
  send(device: typeof SMK1, sample: Sample, receivedAt?: number): void;
}

function engineRig(opts: { state?: MemoryState; clock?: StepClock; signals?: RuleSignal[]; seq?: { n: number } } = {}): EngineRig {
  const clock = opts.clock ?? { wall: T0, steps: 0 };
  const state = opts.state ?? new MemoryState();
  const signals = opts.signals ?? [];
  const seq = opts.seq ?? { n: 0 };
  const engine = createRuleEngine({
    rules: RULES,
    clock: () => clock.wall,
    clockSteps: () => clock.steps,
    logger: memoryLogger(),
    deviceFor: (id) => DEVICES.get(id),
    modelHeartbeatMs: heartbeatOf,
    state,
    onSignal: (s) => void signals.push(s),
  });
  return {
    engine,
    signals,
    clock,
    state,
    run(ms) {
      for (let left = ms; left > 0; left -= 250) {
        clock.wall += Math.min(250, left);
        engine.tick(clock.wall);
      }
    },
    step(ms) {
      clock.wall += ms;
      clock.steps += ms;
    },
    send(device, sample, receivedAt = clock.wall) {
      engine.onReading({ seq: ++seq.n, reading: readingOf(device, receivedAt, sample) });
    },
  };
}

const raised = (r: EngineRig) => r.signals.filter((s) => s.kind === 'raise').map(brief);

describe('rule engine: a wall-clock step forward', () => {
  it('marks no device offline and fires no `for` at the step; both fire after the real time, stamped on the new wall clock', () => {
    const r = engineRig();
    r.engine.restore([]);
    r.send(SMK1, LOW);
    r.run(30_000);
    r.step(+HOUR);
    r.run(1_000);
    r.send(SMK2, OK); // at real 31 s, on the new timeline
    expect(raised(r)).toEqual([]);
    r.run(120_000 - 31_000 - 250);
    expect(raised(r)).toEqual([]);
    r.run(250);
    expect(raised(r)).toEqual([{ kind: 'raise', rule: 'offline', at: T0 + HOUR + 120_000, key: 'SMK-1' }]);
    r.run(600_000 - 120_000);
    expect(raised(r).map((x) => [x.rule, x.key, x.at])).toEqual([
      ['offline', 'SMK-1', T0 + HOUR + 120_000],
      ['offline', 'SMK-2', T0 + HOUR + 151_000],
      ['held', 'SMK-1', T0 + HOUR + 600_000],
    ]);
  });
});

describe('rule engine: a wall-clock step back', () => {
  it('does not freeze silence or `for` for an hour: both fire after the real time, stamped on the new wall clock', () => {
    const r = engineRig();
    r.engine.restore([]);
    r.send(SMK1, LOW);
    r.run(30_000);
    r.step(-HOUR);
    r.run(90_000 - 250);
    expect(raised(r)).toEqual([]);
    r.run(250);
    expect(raised(r)).toEqual([{ kind: 'raise', rule: 'offline', at: T0 - HOUR + 120_000, key: 'SMK-1' }]);
    r.run(480_000);
    expect(raised(r).map((x) => [x.rule, x.at])).toEqual([
      ['offline', T0 - HOUR + 120_000],
      ['held', T0 - HOUR + 600_000],
    ]);
  });

  it('a reading stamped before the step and evaluated after it fires no timer early and its signal carries the new wall time', () => {
    for (const step of [-HOUR, +HOUR]) {
      const r = engineRig();
      r.engine.restore([]);
      r.send(SMK1, OK);
      r.send(SMK2, OK);
      r.run(10_000);
      const stampedAt = r.clock.wall; // stamped, then the clock steps before the commit
      r.step(step);
      r.send(SMK1, { events: ['fire_alarm'], state: { smoke: true } }, stampedAt);
      // SMK-2 (silent for 10 s of 120) is not offline, and the fire is stamped on the new timeline.
      expect(raised(r)).toEqual([{ kind: 'raise', rule: 'fire', at: stampedAt + step, key: 'SMK-1' }]);
      r.run(110_000 - 250);
      expect(raised(r).map((x) => x.rule)).toEqual(['fire']);
      r.run(250);
      expect(raised(r).map((x) => [x.rule, x.key, x.at])).toEqual([
        ['fire', 'SMK-1', stampedAt + step],
        ['offline', 'SMK-2', T0 + step + 120_000],
      ]);
    }
  });
});

describe('rule engine: a restart after a step', () => {
  it('saves the offset with the state: timers resume on real elapsed time, not an hour off', () => {
    const state = new MemoryState();
    const signals: RuleSignal[] = [];
    const seq = { n: 0 };
    const clock = { wall: T0, steps: 0 };
    const a = engineRig({ state, signals, seq, clock });
    a.engine.restore([]);
    a.send(SMK1, LOW);
    a.run(60_000);
    a.step(+HOUR);
    a.run(1_000);
    a.send(SMK1, LOW); // at real 61 s: the device's stored last-seen is on the new timeline
    const lastSeen = clock.wall;
    a.engine.flush();
    // A new process: its wall clock has no steps yet.
    clock.steps = 0;
    const b = engineRig({ state, signals, seq, clock });
    const devices: DeviceLastSeen[] = [{ deviceId: SMK1.id, lastSeen, kind: 'smoke', model: 'smoke-json' }];
    b.engine.restore(devices);
    expect(raised(b)).toEqual([]);
    b.run(120_000 - 250);
    expect(raised(b)).toEqual([]);
    b.run(250);
    expect(raised(b)).toEqual([{ kind: 'raise', rule: 'offline', at: lastSeen + 120_000, key: 'SMK-1' }]);
    b.run(600_000 - 61_000 - 120_000);
    expect(raised(b).map((x) => [x.rule, x.at])).toEqual([
      ['offline', lastSeen + 120_000],
      ['held', T0 + HOUR + 600_000],
    ]);
  });
});

describe('rule engine: no steps', () => {
  it('without clockSteps every change of the clock is elapsed time (a test clock, as before)', () => {
    const clock = { wall: T0, steps: 0 };
    const signals: RuleSignal[] = [];
    const engine = createRuleEngine({
      rules: RULES,
      clock: () => clock.wall,
      logger: memoryLogger(),
      deviceFor: (id) => DEVICES.get(id),
      modelHeartbeatMs: heartbeatOf,
      state: new MemoryState(),
      onSignal: (s) => void signals.push(s),
    });
    engine.restore([]);
    engine.onReading({ seq: 1, reading: readingOf(SMK1, T0, OK) });
    clock.wall += HOUR;
    engine.tick(clock.wall);
    expect(signals.map(brief)).toEqual([{ kind: 'raise', rule: 'offline', at: T0 + 120_000, key: 'SMK-1' }]);
  });
});

// ---- the incident manager -----------------------------------------------------------------

const ESCALATION: EscalationDelays = { critical: 60_000, major: 300_000, minor: 1_800_000, info: null };
const silentLog = { info: () => {}, warn: () => {}, error: () => {} };

function sos(at: number): Extract<RuleSignal, { kind: 'raise' }> {
  return {
    kind: 'raise',
    ruleId: 'sos',
    type: 'sos',
    severity: 'critical',
    scope: 'device',
    scopeKey: 'PGR-0001',
    grid: GRID,
    place: { grid: GRID, building: '5', room: '302' },
    deviceIds: ['PGR-0001'],
    at,
  };
}

interface ManagerRig {
  readonly clock: StepClock;
  /** The next this many incident writes fail. */
  failWrites: number;
  store: IncidentStore;
  manager: IncidentManager;
  run(ms: number): Incident[];
  step(ms: number): void;
  /** A new process on the same file: a new store and manager, a clock without steps. */
  restart(): void;
}

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function managerRig(): ManagerRig {
  const dir = mkdtempSync(join(tmpdir(), 'gridedge-clock-'));
  dirs.push(dir);
  const clock: StepClock = { wall: T0, steps: 0 };
  const make = () => {
    const real = openIncidentStore({ dataDir: dir, logger: silentLog });
    // A store that can refuse the next write (a full disk for a moment).
    const store: IncidentStore = Object.assign(Object.create(real) as IncidentStore, {
      appendChanges: (changes: Parameters<IncidentStore['appendChanges']>[0]) => {
        if (rig.failWrites > 0) {
          rig.failWrites--;
          throw new Error('SQLITE_FULL: database or disk is full');
        }
        return real.appendChanges(changes);
      },
      close: () => real.close(),
    });
    const manager = createIncidentManager({ gatewayId: 'gw-clock', store, clock: { now: () => clock.wall, steps: () => clock.steps }, logger: silentLog, escalation: ESCALATION });
    manager.start();
    return { store, manager };
  };
  const rig: ManagerRig = {
    clock,
    failWrites: 0,
    ...make(),
    run(ms) {
      const out: Incident[] = [];
      for (let left = ms; left > 0; left -= 250) {
        clock.wall += Math.min(250, left);
        out.push(...rig.manager.tick(clock.wall));
      }
      return out;
    },
    step(ms) {
      clock.wall += ms;
      clock.steps += ms;
    },
    restart() {
      rig.store.close();
      clock.steps = 0;
      Object.assign(rig, make());
    },
  };
  return rig;
}

describe('incident manager: escalation across a step', () => {
  for (const step of [+HOUR, -HOUR]) {
    it(`${step > 0 ? 'forward' : 'back'} 1 h: escalates after the real 60 s, not at the step nor an hour off; the moved deadline is saved`, () => {
      const h = managerRig();
      const inc = h.manager.onSignal(sos(T0)) as Incident;
      h.run(10_000);
      h.step(step);
      expect(h.run(250)).toEqual([]);
      // The moved deadline is a new version in the store (and its uplink outbox row).
      expect(h.store.get(inc.id)).toMatchObject({ level: 0, ackDeadline: T0 + 60_000 + step, version: 2 });
      expect(h.run(60_000 - 10_250 - 250)).toEqual([]);
      const escalated = h.run(250);
      expect(escalated.map((i) => [i.id, i.level, i.ackDeadline])).toEqual([[inc.id, 1, T0 + step + 120_000]]);
      expect(escalated[0]?.timeline.at(-1)).toMatchObject({ action: 'escalated', at: T0 + step + 60_000 });
      // Opening, moving the deadline and escalating: the timeline records the two that happened.
      expect(escalated[0]?.timeline.map((e) => e.action)).toEqual(['opened', 'escalated']);
    });
  }

  it('after a restart the saved deadline holds: nothing escalates at start, the ladder goes on in real time', () => {
    const h = managerRig();
    const inc = h.manager.onSignal(sos(T0)) as Incident;
    h.run(10_000);
    h.step(+HOUR);
    h.run(250);
    h.restart();
    expect(h.manager.get(inc.id)?.level).toBe(0);
    expect(h.run(60_000 - 10_250 - 250)).toEqual([]);
    expect(h.run(250).map((i) => i.level)).toEqual([1]);
  });

  it('a write that fails when the deadlines move is retried on the next tick: the step is not forgotten', () => {
    const h = managerRig();
    const inc = h.manager.onSignal(sos(T0)) as Incident;
    h.run(10_000);
    h.step(+HOUR);
    h.failWrites = 1;
    expect(() => h.manager.tick(h.clock.wall)).toThrow(/SQLITE_FULL/);
    expect(h.run(250)).toEqual([]);
    expect(h.store.get(inc.id)).toMatchObject({ level: 0, ackDeadline: T0 + 60_000 + HOUR });
    expect(h.run(60_000 - 10_250 - 250).map((i) => i.level)).toEqual([]);
    expect(h.run(250).map((i) => i.level)).toEqual([1]);
  });
});

describe('incident manager: the SOS cancel window across a step', () => {
  it('forward 1 h: a cancel 1 min (real) after the SOS still cancels it', () => {
    const h = managerRig();
    const inc = h.manager.onSignal(sos(T0)) as Incident;
    h.run(30_000);
    h.step(+HOUR);
    h.run(30_000);
    expect(h.manager.cancelFromDevice('PGR-0001', h.clock.wall).map((i) => [i.id, i.status])).toEqual([[inc.id, 'cancelled']]);
  });

  it('back 1 h: a cancel 3 min (real) after the SOS does not', () => {
    const h = managerRig();
    const inc = h.manager.onSignal(sos(T0)) as Incident;
    h.run(30_000);
    h.step(-HOUR);
    h.run(150_000);
    expect(h.manager.cancelFromDevice('PGR-0001', h.clock.wall)).toEqual([]);
    expect(h.manager.get(inc.id)?.status).toBe('open');
  });
});
