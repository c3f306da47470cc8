#!/usr/bin/env node
// Rule engine benchmark (not a test): rule evaluations per second with the builtin pack and
// 10,000 devices (2,000 each of smoke-json, smoke-ctw, pager-json, pager-rf, elec-ers1), and
// the cost of an idle tick. Runs the TypeScript sources directly (no build needed):
//   npm run bench:rules [-- --seconds 5]   (runs the build in dist/)
import console from 'node:console';
import { performance } from 'node:perf_hooks';
import process from 'node:process';

const { MODELS } = await import('../dist/devices/catalogue.js');
const { loadRules } = await import('../dist/rules/dsl/load.js');
const { createRuleEngine } = await import('../dist/rules/engine/engine.js');

const seconds = Number(process.argv[process.argv.indexOf('--seconds') + 1]) || 5;
const GRID = '110101013001002';
const MODEL_IDS = ['smoke-json', 'smoke-ctw', 'pager-json', 'pager-rf', 'elec-ers1'];
const N = 10_000;

const devices = new Map();
for (let i = 0; i < N; i++) {
  const model = MODEL_IDS[i % MODEL_IDS.length];
  devices.set(`D${i}`, { id: `D${i}`, model, place: { grid: GRID, building: String(i % 50), room: `R${Math.floor(i / 5)}` } });
}

/** A key/value like the store's, in memory, counting writes. */
const kv = new Map();
let writes = 0;
const writesByKind = new Map();
const state = {
  get: (k) => (kv.has(k) ? JSON.parse(kv.get(k)) : undefined),
  set: (k, v) => {
    writes++;
    const kind = k.split(':').slice(0, 4).join(':');
    writesByKind.set(kind, (writesByKind.get(kind) ?? 0) + 1);
    kv.set(k, JSON.stringify(v));
  },
  delete: (k) => void kv.delete(k),
};

let now = Date.UTC(2024, 11, 4, 8);
let signals = 0;
const { rules } = await loadRules(['builtin'], process.cwd());
const silent = { info() {}, warn() {}, error() {} };
const engine = createRuleEngine({
  rules,
  clock: () => now,
  logger: silent,
  deviceFor: (id) => devices.get(id),
  modelHeartbeatMs: (m) => MODELS.get(m).heartbeatMs,
  state,
  onSignal: () => void signals++,
});
engine.restore([...devices.values()].map((d) => ({ deviceId: d.id, lastSeen: now })));

/** Telemetry as it arrives: meters at every poll, the others heartbeats, RF pagers a test press (no alarms). */
function reading(d, t, i) {
  const kind = MODELS.get(d.model).kind;
  const base = { deviceId: d.id, model: d.model, kind, ts: t, receivedAt: t, place: d.place, metrics: {}, state: {}, events: [] };
  if (kind === 'electrical') {
    const wobble = (i % 7) * 0.1;
    base.metrics = { voltage_v: 221 + wobble, current_a: 3.2, power_w: 700, power_factor: 0.98, frequency_hz: 50, energy_kwh: 1234.5, residual_ma: 12, t1_c: 30 + wobble, t2_c: 31, t3_c: 29.5, t4_c: 30.2, arc_count: 0 };
    base.state = { leakage: false, overheat: false, arc_fault: false, overload: false, over_voltage: false, under_voltage: false, short_circuit: false, tripped: false, comm_fault: false, fault: false };
  } else if (kind === 'smoke') {
    base.metrics = { battery_pct: 85, rssi_dbm: -71 };
    base.state = { smoke: false, silenced: false, fault: false, battery_low: false, tamper: false, test: false };
    base.events = ['heartbeat'];
  } else {
    base.metrics = d.model === 'pager-json' ? { battery_pct: 80 } : {};
    base.state = { battery_low: false };
    base.events = d.model === 'pager-json' ? ['heartbeat'] : ['test'];
  }
  return base;
}

const list = [...devices.values()];
let seq = 0;
// Warm-up: every device once (first readings load and create state).
for (const d of list) engine.onReading({ seq: ++seq, reading: reading(d, now, seq) });
engine.tick(now);

const before = engine.stats();
const writesBefore = writes;
const t0 = performance.now();
let n = 0;
let lastTick = now;
while (performance.now() - t0 < seconds * 1000) {
  for (let k = 0; k < 1000; k++) {
    const d = list[n % N];
    now += 1; // 1000 readings per simulated second
    // An RF pager sends only when pressed: here a monthly test press, rarely.
    if (d.model === 'pager-rf' && Math.floor(n / N) % 50 !== 0) {
      n++;
      continue;
    }
    engine.onReading({ seq: ++seq, reading: reading(d, now, n) });
    n++;
  }
  if (now - lastTick >= 250) {
    engine.tick(now);
    lastTick = now;
  }
}
const elapsed = (performance.now() - t0) / 1000;
const after = engine.stats();
const evaluations = after.evaluations - before.evaluations;

// An idle tick: nothing due, 8,000 offline deadlines pending.
const ticks = 10_000;
const t1 = performance.now();
for (let i = 0; i < ticks; i++) engine.tick(now);
const tickUs = ((performance.now() - t1) * 1000) / ticks;

console.log(`rules: ${rules.length} (builtin), devices: ${N}`);
console.log(`readings: ${after.readings - before.readings} in ${elapsed.toFixed(2)} s = ${Math.round((after.readings - before.readings) / elapsed)} readings/s`);
console.log(`rule evaluations: ${evaluations} = ${Math.round(evaluations / elapsed)} evaluations/s (${(evaluations / (after.readings - before.readings)).toFixed(2)} per reading, ${((elapsed * 1e6) / evaluations).toFixed(2)} µs each)`);
console.log(`state writes: ${writes - writesBefore} (${((writes - writesBefore) / (after.readings - before.readings)).toFixed(3)} per reading); signals: ${signals}`);
if (process.argv.includes('--writes')) console.log(Object.fromEntries([...writesByKind].sort((a, b) => b[1] - a[1]).slice(0, 10)));
console.log(`idle tick: ${tickUs.toFixed(2)} µs with ${after.timersPending} pending deadlines; instances in memory: ${after.instances}`);
