import fc from 'fast-check';
import { performance } from 'node:perf_hooks';
import { beforeAll, describe, expect, it } from 'vitest';
import type { CompiledRule } from '../../../rules/dsl/compile.js';
import { checkRules, loadRules } from '../../../rules/dsl/load.js';
import { DeadlineQueue } from '../../../rules/engine/deadlines.js';
import type { RuleSignal } from '../../../rules/signals.js';
import { brief, GRID, makeRig, MemoryState, readingOf, T0, deviceRecord, type DeviceSpec } from './harness.js';

function rulesOf(text: string): CompiledRule[] {
  const checked = checkRules([{ file: 'test.yaml', text }]);
  if (checked.issues.length > 0) throw new Error(JSON.stringify(checked.issues));
  return [...checked.rules];
}

const LEAKAGE = rulesOf(`rules:
  - id: electrical.leakage
    type: electrical.leakage
    severity: major
    scope: device
    match: { kind: electrical }
    when: { metric: residual_ma, op: '>=', value: 300, for: 5s }
    clear: { metric: residual_ma, op: '<', value: 200, for: 30s }
`);

const ELEC: DeviceSpec = { id: 'ELEC-1', model: 'elec-ers1' };
const s = (ms: number) => T0 + ms;

let builtin: readonly CompiledRule[];
beforeAll(async () => {
  builtin = (await loadRules(['builtin'], process.cwd())).rules;
});

describe('for timers on an injected clock', () => {
  it('fires when the clock reaches the deadline, not a tick before, with the deadline as its time', () => {
    const rig = makeRig({ rules: LEAKAGE, devices: [ELEC] });
    rig.engine.restore([]);
    rig.send('ELEC-1', s(0), { metrics: { residual_ma: 320 } });
    rig.engine.tick(s(4_999));
    expect(rig.signals).toEqual([]);
    rig.engine.tick(s(5_000));
    expect(rig.signals.map(brief)).toEqual([{ kind: 'raise', rule: 'electrical.leakage', at: s(5_000), key: 'ELEC-1' }]);
    // A late tick still says when the condition became true.
    rig.engine.tick(s(60_000));
    expect(rig.signals).toHaveLength(1);
  });

  it('a timer that was due before a reading fires before the reading is evaluated', () => {
    const rig = makeRig({ rules: LEAKAGE, devices: [ELEC] });
    rig.engine.restore([]);
    rig.send('ELEC-1', s(0), { metrics: { residual_ma: 320 } });
    // No tick between: the reading at 7 s, with the leakage gone, comes after the 5 s deadline.
    rig.engine.onReading({ seq: 99, reading: readingOf(deviceRecord(ELEC), s(7_000), { metrics: { residual_ma: 10 } }) });
    expect(rig.signals.map(brief)).toEqual([{ kind: 'raise', rule: 'electrical.leakage', at: s(5_000), key: 'ELEC-1' }]);
  });
});

describe('restart: rule state through the state dep', () => {
  it('half a for window, a new engine from the same state, the rest: fires exactly once, at the right time', () => {
    const a = makeRig({ rules: LEAKAGE, devices: [ELEC] });
    a.engine.restore([]);
    a.send('ELEC-1', s(0), { metrics: { residual_ma: 320 } });
    a.send('ELEC-1', s(1_000), { metrics: { residual_ma: 330 } });
    a.send('ELEC-1', s(2_000), { metrics: { residual_ma: 325 } });
    // The timer start was a decisive change: it is in the state now, without a flush.
    expect([...a.state.map.keys()].some((k) => k.startsWith('rules:engine:i:electrical.leakage:'))).toBe(true);

    const b = a.restart(); // engine a is gone (never ticked again)
    b.engine.restore([{ deviceId: 'ELEC-1', lastSeen: s(2_000) }]);
    b.send('ELEC-1', s(3_000), { metrics: { residual_ma: 320 } });
    b.send('ELEC-1', s(4_000), { metrics: { residual_ma: 320 } });
    b.tickTo(s(4_750));
    expect(b.signals).toEqual([]);
    b.tickTo(s(5_000));
    b.send('ELEC-1', s(6_000), { metrics: { residual_ma: 320 } });
    expect(b.signals.map(brief)).toEqual([{ kind: 'raise', rule: 'electrical.leakage', at: s(5_000), key: 'ELEC-1' }]);

    // Raised is remembered across a restart too: the same episode does not fire again ...
    const c = b.restart();
    c.engine.restore([{ deviceId: 'ELEC-1', lastSeen: s(6_000) }]);
    for (let t = 7_000; t <= 20_000; t += 1_000) c.send('ELEC-1', s(t), { metrics: { residual_ma: 320 } });
    expect(c.signals).toHaveLength(1);
    // ... and its clear (below 200 for 30 s) spans yet another restart.
    for (let t = 21_000; t <= 35_000; t += 1_000) c.send('ELEC-1', s(t), { metrics: { residual_ma: 150 } });
    const d = c.restart();
    d.engine.restore([{ deviceId: 'ELEC-1', lastSeen: s(35_000) }]);
    for (let t = 36_000; t <= 60_000; t += 1_000) d.send('ELEC-1', s(t), { metrics: { residual_ma: 150 } });
    expect(d.signals.map(brief)).toEqual([
      { kind: 'raise', rule: 'electrical.leakage', at: s(5_000), key: 'ELEC-1' },
      { kind: 'clear', rule: 'electrical.leakage', at: s(51_000), key: 'ELEC-1' },
    ]);
  });

  it('a for timer resumes after a restart even when the device sends nothing more', () => {
    const a = makeRig({ rules: LEAKAGE, devices: [ELEC] });
    a.engine.restore([]);
    a.send('ELEC-1', s(0), { metrics: { residual_ma: 400 } });
    a.send('ELEC-1', s(2_000), { metrics: { residual_ma: 400 } });
    const b = a.restart();
    b.engine.restore([{ deviceId: 'ELEC-1', lastSeen: s(2_000) }]);
    b.tickTo(s(10_000));
    expect(b.signals.map(brief)).toEqual([{ kind: 'raise', rule: 'electrical.leakage', at: s(5_000), key: 'ELEC-1' }]);
  });

  it('a window of correlated events survives a restart (fire.confirmed across one)', () => {
    const devices: DeviceSpec[] = [
      { id: 'SMK-A', model: 'smoke-json' },
      { id: 'SMK-B', model: 'smoke-ctw' },
    ];
    const a = makeRig({ rules: builtin, devices });
    a.engine.restore([]);
    a.send('SMK-A', s(0), { state: { smoke: true }, events: ['fire_alarm'] });
    const b = a.restart();
    b.engine.restore([{ deviceId: 'SMK-A', lastSeen: s(0) }]);
    b.send('SMK-B', s(30_000), { state: { smoke: true }, events: ['fire_alarm'] });
    expect(b.signals.filter((x) => x.ruleId === 'fire.confirmed').map(brief)).toEqual([{ kind: 'raise', rule: 'fire.confirmed', at: s(30_000), key: `${GRID}/7/B1-3` }]);
  });

  it('rolling windows are written at most once per flush interval; decisive changes at once', () => {
    const rig = makeRig({ rules: builtin, devices: [ELEC], deps: { flushIntervalMs: 1_000 } });
    rig.engine.restore([]);
    const before = rig.state.writes;
    // 50 readings in one second of rising temperature (rise windows change on every one).
    for (let i = 0; i < 50; i++) rig.engine.onReading({ seq: 1000 + i, reading: readingOf(deviceRecord(ELEC), s(i * 20), { metrics: { t1_c: 30 + i * 0.01 } }) });
    expect(rig.state.writes - before).toBe(0);
    rig.engine.tick(s(1_000));
    const afterTick = rig.state.writes - before;
    expect(afterTick).toBeGreaterThan(0);
    expect(afterTick).toBeLessThanOrEqual(3); // the history, the meta (seq), maybe an index
    // A short circuit is decisive: written before onReading returns.
    rig.engine.onReading({ seq: 2000, reading: readingOf(deviceRecord(ELEC), s(1_100), { state: { short_circuit: true }, events: ['short_circuit'] }) });
    expect(rig.state.writes - before).toBeGreaterThan(afterTick);
  });

  it('persistedSeq says what the saved state covers; after a restart those readings are skipped, alarms excepted', () => {
    const a = makeRig({ rules: builtin, devices: [{ id: 'PGR-1', model: 'pager-json' }] });
    a.engine.restore([]);
    const pager = deviceRecord({ id: 'PGR-1', model: 'pager-json' });
    a.engine.onReading({ seq: 1, reading: readingOf(pager, s(0), { events: ['service_call'] }) });
    a.engine.onReading({ seq: 2, reading: readingOf(pager, s(1_000), { events: ['sos'] }) });
    a.engine.flush();
    expect(a.engine.persistedSeq()).toBe(2);
    expect(a.signals.map((x) => x.ruleId)).toEqual(['service_call', 'sos']);
    // The gateway replays from its cursor: seq 1 is skipped, the SOS is processed again (a
    // duplicate raise is folded by the incident manager; a lost one would be the worst bug).
    const b = a.restart();
    b.engine.restore([]);
    b.engine.onReading({ seq: 1, reading: readingOf(pager, s(0), { events: ['service_call'] }) });
    b.engine.onReading({ seq: 2, reading: readingOf(pager, s(1_000), { events: ['sos'] }) });
    b.engine.onReading({ seq: 2, reading: readingOf(pager, s(1_000), { events: ['sos'] }) });
    expect(b.signals.map((x) => x.ruleId)).toEqual(['service_call', 'sos', 'sos']);
    expect(b.engine.stats().duplicates).toBe(2);
  });

  it('a rule whose conditions changed keeps only whether it is raised', () => {
    const a = makeRig({ rules: LEAKAGE, devices: [ELEC] });
    a.engine.restore([]);
    for (let t = 0; t <= 6_000; t += 1_000) a.send('ELEC-1', s(t), { metrics: { residual_ma: 320 } });
    expect(a.signals).toHaveLength(1);
    const changed = rulesOf(`rules:
  - id: electrical.leakage
    type: electrical.leakage
    severity: major
    scope: device
    match: { kind: electrical }
    when: { metric: residual_ma, op: '>=', value: 250, for: 5s }
    clear: { metric: residual_ma, op: '<', value: 150, for: 10s }
`);
    const b = makeRig({ rules: changed, devices: [ELEC], state: a.state, signals: a.signals, start: s(7_000) });
    b.engine.restore([]);
    expect(b.logger.lines.some((l) => l.level === 'warn' && /rule changed/.test(l.msg ?? ''))).toBe(true);
    for (let t = 7_000; t <= 15_000; t += 1_000) b.send('ELEC-1', s(t), { metrics: { residual_ma: 320 } });
    for (let t = 16_000; t <= 30_000; t += 1_000) b.send('ELEC-1', s(t), { metrics: { residual_ma: 100 } });
    expect(b.signals.map(brief)).toEqual([
      { kind: 'raise', rule: 'electrical.leakage', at: s(5_000), key: 'ELEC-1' },
      { kind: 'clear', rule: 'electrical.leakage', at: s(26_000), key: 'ELEC-1' },
    ]);
  });
});

describe('silentFor resumes from the restored last-seen', () => {
  const smoke = (n: number): DeviceSpec => ({ id: `SMK-${n}`, model: 'smoke-json', room: `R${n}` });

  it('offline at start only when silent long enough while the gateway was down; the others on time', () => {
    const rig = makeRig({ rules: builtin, devices: [smoke(1), smoke(2), smoke(3)], start: s(0) });
    rig.engine.restore([
      { deviceId: 'SMK-1', lastSeen: s(-50 * 60_000) }, // 50 min ago: offline in 10 min
      { deviceId: 'SMK-2', lastSeen: s(-2 * 3_600_000) }, // 2 h ago: offline since an hour ago
      { deviceId: 'SMK-3', lastSeen: s(-60_000) },
    ]);
    expect(rig.signals.map(brief)).toEqual([{ kind: 'raise', rule: 'device.offline', at: s(-3_600_000), key: 'SMK-2' }]);
    rig.tickTo(s(9 * 60_000));
    expect(rig.signals).toHaveLength(1);
    rig.tickTo(s(10 * 60_000));
    expect(rig.signals.map(brief).slice(1)).toEqual([{ kind: 'raise', rule: 'device.offline', at: s(10 * 60_000), key: 'SMK-1' }]);
  });

  it('no offline storm and no false "online" after a restart', () => {
    const devices = Array.from({ length: 200 }, (_, i) => smoke(i));
    const a = makeRig({ rules: builtin, devices });
    a.engine.restore([]);
    // Everyone reports at 0; all but SMK-0 again at 30 min. SMK-0 goes offline at 1 h.
    for (const d of devices) a.send(d.id, s(0), { events: ['heartbeat'] });
    for (const d of devices.slice(1)) a.send(d.id, s(30 * 60_000), { events: ['heartbeat'] });
    a.tickTo(s(61 * 60_000));
    expect(a.signals.map(brief)).toEqual([{ kind: 'raise', rule: 'device.offline', at: s(3_600_000), key: 'SMK-0' }]);

    // The gateway is down from 61 min to 70 min; the store's last-seen is what it restores from.
    const b = a.restart();
    b.tickTo(s(70 * 60_000));
    b.engine.restore(devices.map((d, i) => ({ deviceId: d.id, lastSeen: i === 0 ? s(0) : s(30 * 60_000) })));
    b.tickTo(s(80 * 60_000));
    expect(b.signals).toHaveLength(1); // nothing new: SMK-0 was already offline, the rest are not due
    // SMK-0 comes back: its clear is the only one.
    b.send('SMK-0', s(81 * 60_000), { events: ['heartbeat'] });
    expect(b.signals.map(brief).slice(1)).toEqual([{ kind: 'clear', rule: 'device.offline', at: s(81 * 60_000), key: 'SMK-0' }]);
    // The others go offline on their own schedule, each once.
    b.tickTo(s(91 * 60_000));
    expect(b.signals.slice(2).map((x) => x.scopeKey).sort()).toEqual(devices.slice(1).map((d) => d.id).sort());
  });

  it('a device that is no longer registered does not go offline', () => {
    const rig = makeRig({ rules: builtin, devices: [smoke(1)], start: s(0) });
    rig.engine.restore([{ deviceId: 'SMK-1', lastSeen: s(0) }]);
    rig.devices.delete('SMK-1');
    rig.tickTo(s(2 * 3_600_000));
    expect(rig.signals).toEqual([]);
  });

  it('the RF pager test-press clock is kept across restarts (a restart does not re-anchor it)', () => {
    const pager: DeviceSpec = { id: 'RF-1', model: 'pager-rf' };
    const a = makeRig({ rules: builtin, devices: [pager] });
    a.engine.restore([]);
    a.send('RF-1', s(0), { events: ['test'] });
    a.send('RF-1', s(20 * 86_400_000), { events: ['sos'] });
    a.engine.flush();
    const b = a.restart();
    b.engine.restore([{ deviceId: 'RF-1', lastSeen: s(20 * 86_400_000) }]);
    b.tickTo(s(36 * 86_400_000));
    expect(b.signals.filter((x) => x.ruleId === 'device.offline.rf').map(brief)).toEqual([{ kind: 'raise', rule: 'device.offline.rf', at: s(35 * 86_400_000), key: 'RF-1' }]);
  });
});

describe('signals are never lost', () => {
  it('a throwing onSignal keeps the signal, retries it in order, and keeps it across a restart', () => {
    const pager: DeviceSpec = { id: 'PGR-1', model: 'pager-json' };
    let failing = true;
    const delivered: RuleSignal[] = [];
    const state = new MemoryState();
    const a = makeRig({
      rules: builtin,
      devices: [pager],
      state,
      deps: {
        onSignal: (sig) => {
          if (failing) throw new Error('incident store is busy');
          delivered.push(sig);
        },
      },
    });
    a.engine.restore([]);
    a.send('PGR-1', s(0), { events: ['sos'] });
    a.send('PGR-1', s(100), { events: ['fall'] });
    expect(a.engine.stats().pendingSignals).toBe(2);
    expect(a.logger.lines.some((l) => l.level === 'error' && (l.obj as { code?: string }).code === 'RULE_ERR_SIGNAL')).toBe(true);

    // Restart while the manager still fails: the pending signals are in the state.
    const b = makeRig({ rules: builtin, devices: [pager], state, start: s(200), deps: { onSignal: (sig) => void delivered.push(sig) } });
    failing = false;
    b.engine.restore([]);
    b.tickTo(s(5_000));
    expect(delivered.map((x) => [x.ruleId, x.at])).toEqual([
      ['sos', s(0)],
      ['fall', s(100)],
    ]);
    expect(b.engine.stats().pendingSignals).toBe(0);
  });

  it('a reading that is a self-test and also an alarm is not withheld', () => {
    const rig = makeRig({ rules: builtin, devices: [{ id: 'PGR-1', model: 'pager-json' }] });
    rig.engine.restore([]);
    rig.send('PGR-1', s(0), { events: ['test', 'sos'] });
    expect(rig.signals.map((x) => x.ruleId)).toEqual(['sos']);
  });

  it('drill mode from the isDrill dep, and counts of what was withheld', () => {
    let drill = true;
    const rig = makeRig({ rules: builtin, devices: [{ id: 'PGR-1', model: 'pager-json' }], deps: { isDrill: () => drill } });
    rig.engine.restore([]);
    rig.send('PGR-1', s(0), { events: ['sos'] });
    expect(rig.signals).toEqual([]);
    expect(rig.engine.stats().suppressed).toBe(1);
    expect(rig.logger.lines.some((l) => l.level === 'info' && (l.obj as { reason?: string }).reason === 'drill')).toBe(true);
    drill = false;
    rig.send('PGR-1', s(1_000), { events: ['sos'] });
    expect(rig.signals.map((x) => x.ruleId)).toEqual(['sos']);
  });
});

describe('cost with 10,000 devices', () => {
  it('a tick costs the timers that are due, not one check per device (timings logged, not asserted)', () => {
    const devices: DeviceSpec[] = [];
    for (let i = 0; i < 10_000; i++) {
      const model = ['smoke-json', 'smoke-ctw', 'pager-json', 'pager-rf', 'elec-ers1'][i % 5] as string;
      devices.push({ id: `D${i}`, model, building: String(i % 40), room: `R${i % 400}` });
    }
    const rig = makeRig({ rules: builtin, devices, start: s(0) });
    let t = performance.now();
    rig.engine.restore(devices.map((d) => ({ deviceId: d.id, lastSeen: s(-60_000) })));
    const restoreMs = performance.now() - t;
    const pending = rig.engine.stats().timersPending;
    expect(pending).toBeGreaterThanOrEqual(8_000); // one offline deadline per smoke and pager device

    const before = rig.engine.stats().evaluations;
    t = performance.now();
    const ticks = 1_000;
    for (let i = 1; i <= ticks; i++) rig.engine.tick(s(i * 250));
    const tickUs = ((performance.now() - t) * 1_000) / ticks;
    expect(rig.engine.stats().evaluations).toBe(before); // nothing due: nothing evaluated

    // One reading per device, then a tick: readings cost their rules, the tick its due timers.
    t = performance.now();
    let seq = 0;
    for (const d of devices) {
      const record = rig.devices.get(d.id);
      if (!record) continue;
      const sample = d.model === 'elec-ers1' ? { metrics: { voltage_v: 221, current_a: 2, residual_ma: 12, t1_c: 30, t2_c: 31 }, state: { short_circuit: false, arc_fault: false, overload: false, fault: false } } : { events: ['heartbeat'] };
      rig.engine.onReading({ seq: ++seq, reading: readingOf(record, s(300_000), sample) });
    }
    const readingsMs = performance.now() - t;
    const evaluations = rig.engine.stats().evaluations - before;
    console.log(
      `10,000 devices, ${builtin.length} builtin rules: restore ${restoreMs.toFixed(1)} ms, idle tick ${tickUs.toFixed(1)} µs with ${pending} pending deadlines; ` +
        `10,000 readings in ${readingsMs.toFixed(1)} ms (${evaluations} rule evaluations, ${Math.round(evaluations / (readingsMs / 1000))} evaluations/s)`,
    );
    expect(rig.signals).toEqual([]);
  });
});

describe('DeadlineQueue', () => {
  it('comes out in deadline order, with moves and cancels (against a plain model)', () => {
    type Op = { op: 'schedule'; key: number; at: number } | { op: 'cancel'; key: number } | { op: 'pop'; now: number };
    const op = fc.oneof(
      fc.record({ op: fc.constant('schedule' as const), key: fc.integer({ min: 0, max: 9 }), at: fc.integer({ min: 0, max: 100 }) }),
      fc.record({ op: fc.constant('cancel' as const), key: fc.integer({ min: 0, max: 9 }) }),
      fc.record({ op: fc.constant('pop' as const), now: fc.integer({ min: 0, max: 100 }) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 80 }), (ops: Op[]) => {
        const q = new DeadlineQueue<number>();
        const model = new Map<string, number>();
        for (const o of ops) {
          if (o.op === 'schedule') {
            q.schedule(String(o.key), o.at, o.key);
            model.set(String(o.key), o.at);
          } else if (o.op === 'cancel') {
            q.cancel(String(o.key));
            model.delete(String(o.key));
          } else {
            const got: [string, number][] = [];
            for (let d = q.popDue(o.now); d; d = q.popDue(o.now)) got.push([d.key, d.deadline]);
            const want = [...model].filter(([, at]) => at <= o.now);
            for (const [k] of want) model.delete(k);
            // Deadlines in order; same-deadline keys in any order.
            expect(got.map(([, at]) => at)).toEqual(want.map(([, at]) => at).sort((x, y) => x - y));
            expect(got.map(([k]) => k).sort()).toEqual(want.map(([k]) => k).sort());
          }
          expect(q.size).toBe(model.size);
        }
      }),
    );
  });
});

describe('less common shapes', () => {
  it('a silentFor in clear starts waiting at the raise (clear after 10 min without a message)', () => {
    const rules = rulesOf(`rules:
  - id: sos.quiet
    type: sos
    severity: critical
    scope: device
    when: { event: sos }
    clear: { silentFor: 10m }
`);
    const rig = makeRig({ rules, devices: [{ id: 'PGR-1', model: 'pager-json' }] });
    rig.engine.restore([]);
    rig.send('PGR-1', s(0), { events: ['sos'] });
    rig.send('PGR-1', s(60_000), { events: ['heartbeat'] });
    rig.tickTo(s(11 * 60_000));
    expect(rig.signals.map(brief)).toEqual([
      { kind: 'raise', rule: 'sos.quiet', at: s(0), key: 'PGR-1' },
      { kind: 'clear', rule: 'sos.quiet', at: s(11 * 60_000), key: 'PGR-1' },
    ]);
  });

  it('a level rule without clear raises again only after its condition stopped holding', () => {
    const rules = rulesOf(`rules:
  - id: hot.for
    type: electrical.overheat
    severity: major
    scope: device
    when: { metric: 't*_c', op: '>=', value: 50, for: 2s }
`);
    const rig = makeRig({ rules, devices: [ELEC] });
    rig.engine.restore([]);
    for (let t = 0; t <= 5_000; t += 1_000) rig.send('ELEC-1', s(t), { metrics: { t1_c: 55 } });
    rig.send('ELEC-1', s(6_000), { metrics: { t1_c: 40 } });
    for (let t = 7_000; t <= 10_000; t += 1_000) rig.send('ELEC-1', s(t), { metrics: { t1_c: 55 } });
    expect(rig.signals.map(brief)).toEqual([
      { kind: 'raise', rule: 'hot.for', at: s(2_000), key: 'ELEC-1' },
      { kind: 'raise', rule: 'hot.for', at: s(9_000), key: 'ELEC-1' },
    ]);
  });

  it('a grid-scope count across rooms: three SOS presses in a grid within 10 min', () => {
    const rules = rulesOf(`rules:
  - id: grid.sos.cluster
    type: sos.cluster
    severity: major
    scope: grid
    when: { count: sos, atLeast: 3, distinctDevices: true, within: 10m }
`);
    const devices: DeviceSpec[] = [1, 2, 3].map((i) => ({ id: `P${i}`, model: 'pager-json', building: String(i), room: '101' }));
    const rig = makeRig({ rules, devices });
    rig.engine.restore([]);
    rig.send('P1', s(0), { events: ['sos'] });
    rig.send('P2', s(60_000), { events: ['sos'] });
    rig.send('P3', s(120_000), { events: ['sos'] });
    const raised = rig.signals[0];
    expect(rig.signals).toHaveLength(1);
    expect(raised).toMatchObject({ kind: 'raise', scope: 'grid', scopeKey: GRID, place: { grid: GRID, building: '', room: '' } });
    expect(raised?.kind === 'raise' ? [...raised.deviceIds].sort() : []).toEqual(['P1', 'P2', 'P3']);
  });

  it('while onSignal fails, repeats of a waiting raise are not queued again', () => {
    let fail = true;
    const got: RuleSignal[] = [];
    const rig = makeRig({
      rules: builtin,
      devices: [ELEC],
      deps: {
        onSignal: (x) => {
          if (fail) throw new Error('down');
          got.push(x);
        },
      },
    });
    rig.engine.restore([]);
    for (let t = 0; t < 100; t++) rig.engine.onReading({ seq: t + 1, reading: readingOf(deviceRecord(ELEC), s(t * 10), { metrics: { t1_c: 80 } }) });
    expect(rig.engine.stats().pendingSignals).toBe(2); // electrical.overheat and .pre, once each
    fail = false;
    rig.tickTo(s(60_000));
    expect(got.map((x) => x.ruleId)).toEqual(['electrical.overheat', 'electrical.overheat.pre']);
  });
});

describe('stats', () => {
  it('counts readings, evaluations and raises, and rates them per second of the clock', () => {
    const rig = makeRig({ rules: builtin, devices: [ELEC, { id: 'PGR-1', model: 'pager-json' }] });
    rig.engine.restore([]);
    for (let t = 0; t < 10; t++) rig.send('ELEC-1', s(t * 100), { metrics: { residual_ma: 12, t1_c: 30 } });
    rig.send('PGR-1', s(950), { events: ['sos'] });
    rig.tickTo(s(1_000));
    const st = rig.engine.stats();
    expect(st).toMatchObject({ readings: 11, raised: 1, cleared: 0, suppressed: 0, pendingSignals: 0 });
    expect(st.evaluations).toBeGreaterThanOrEqual(11);
    expect(st.evaluationsPerSecond).toBeCloseTo(st.evaluations, 0);
    expect(st.readingsPerSecond).toBeCloseTo(11, 0);
    expect(st.persistedSeq).toBe(11);
  });
});
