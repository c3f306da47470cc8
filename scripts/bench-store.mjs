#!/usr/bin/env node
// Store benchmark (not a test): appends/s and commit latency with group commit versus one
// transaction per reading, with synchronous=FULL on this machine's disk. Needs `npm run build`.
//   node scripts/bench-store.mjs [--seconds 3]
import console from 'node:console';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import process from 'node:process';
import { setImmediate, setTimeout } from 'node:timers';
import { openStore } from '../dist/ingest/store/index.js';

const seconds = Number(process.argv[process.argv.indexOf('--seconds') + 1]) || 3;
const silent = { info() {}, warn() {}, error() {} };

function reading(i, events = ['heartbeat']) {
  const now = Date.now();
  return {
    deviceId: `SMK-${String(i % 2000).padStart(4, '0')}`,
    model: 'smoke-json',
    kind: 'smoke',
    ts: now,
    receivedAt: now,
    metrics: { battery_pct: 85, rssi_dbm: -71 },
    state: { smoke: false, tamper: false, fault: false, battery_low: false },
    events,
    place: { grid: '110101013001002', building: '7', room: 'B1-3' },
  };
}

function pct(sorted, p) {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] : NaN;
}

/**
 * Producer: `perTick` appends per event-loop turn (as MQTT delivers them), at most `window` in
 * flight (PUBACKs outstanding), for `seconds`. Optionally one sos every `alarmEveryMs`.
 */
async function run(name, groupCommit, { perTick = 50, window = 20_000, alarmEveryMs = 0, rate = 0, outboxMaxBytes, sinkDown = false } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'gridedge-bench-'));
  const store = openStore({ path: join(dir, 'store.db'), clock: Date.now, logger: silent, groupCommit, outboxMaxBytes });
  // A sink that never acknowledges: the outbox fills to its bound and every commit drops telemetry.
  if (sinkDown) store.registerConsumer('influxdb1:down', { from: 'start' });
  let inFlight = 0;
  let done = 0;
  let i = 0;
  const lat = [];
  const alarmLat = [];
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  let nextAlarm = alarmEveryMs ? t0 + alarmEveryMs : Infinity;
  await new Promise((resolve) => {
    const tick = () => {
      const now = performance.now();
      if (now >= end) return inFlight === 0 ? resolve() : setTimeout(tick, 1);
      if (now >= nextAlarm) {
        nextAlarm += alarmEveryMs;
        const at = performance.now();
        void store.append(reading(i++, ['sos'])).then(() => alarmLat.push(performance.now() - at));
      }
      // A paced producer offers `rate` readings/s; an unpaced one as many as the window allows.
      const allowed = rate ? Math.floor(((now - t0) / 1000) * rate) - i : perTick;
      for (let k = 0; k < Math.min(perTick, allowed) && inFlight < window; k++) {
        const at = performance.now();
        inFlight++;
        void store.append(reading(i++)).then(() => {
          inFlight--;
          done++;
          lat.push(performance.now() - at);
        });
      }
      setImmediate(tick);
    };
    tick();
  });
  const elapsed = (performance.now() - t0) / 1000;
  const s = store.stats();
  await store.close();
  rmSync(dir, { recursive: true, force: true });
  lat.sort((a, b) => a - b);
  alarmLat.sort((a, b) => a - b);
  const row = {
    mode: name,
    'appends/s': Math.round(done / elapsed),
    batches: s.commitBatches,
    'rows/batch': +(s.committedRows / Math.max(1, s.commitBatches)).toFixed(1),
    'p50 ms': +pct(lat, 0.5).toFixed(2),
    'p99 ms': +pct(lat, 0.99).toFixed(2),
    dropped: s.droppedTelemetry,
  };
  if (alarmEveryMs) {
    row['sos p50 ms'] = +pct(alarmLat, 0.5).toFixed(2);
    row['sos max ms'] = +(alarmLat.at(-1) ?? NaN).toFixed(2);
  }
  return row;
}

const rows = [];
rows.push(await run('one transaction per row', { maxRows: 1, maxDelayMs: 0 }, { window: 1 }));
rows.push(await run('group commit 5 ms / 1000', { maxDelayMs: 5, maxRows: 1000 }));
rows.push(await run('group commit, paced 5k/s', { maxDelayMs: 5, maxRows: 1000 }, { rate: 5000 }));
rows.push(await run('group commit 5k/s + sos/100ms', { maxDelayMs: 5, maxRows: 1000 }, { rate: 5000, alarmEveryMs: 100 }));
rows.push(await run('group commit max + sos/100ms', { maxDelayMs: 5, maxRows: 1000 }, { alarmEveryMs: 100 }));
rows.push(
  await run('sink down, 4 MiB outbox full + sos', { maxDelayMs: 5, maxRows: 1000 }, { alarmEveryMs: 100, outboxMaxBytes: 4 * 1024 * 1024, sinkDown: true }),
);
console.table(rows);
