#!/usr/bin/env node
// Drain benchmark (issue 7 §5): how fast the InfluxDB 1.x sink empties a backlog the store kept
// while InfluxDB was away. The backlog is written into a real store first (as an outage leaves
// it), then the gateway's own sink set (gateway/sinks.ts: runner, batches, cursor acks) delivers
// it to a real influxd that is already up — so the figure is the sink's capacity, without
// influxd's own restart (WAL replay) that the side-by-side outage run also contains.
//   node scripts/bench/drain.mjs [--points 200000] [--batch 5000]
// Needs `npm run build` and influxd (scripts/test-deps.sh installs it).
import console from 'node:console';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import process from 'node:process';
import { pino } from 'pino';
import { createSinkSet } from '../../dist/gateway/sinks.js';
import { openStore } from '../../dist/ingest/store/index.js';
import { DB, GRID, flag, influxCountsByDevice, killChildren, loadResult, rate, saveResult, sleep, startInfluxd, sum } from './lib.mjs';

const points = Number(flag('points', 200_000));
const batchSize = Number(flag('batch', 5000));
const DEVICES = 2000;
const logger = pino({ level: 'warn' });

function reading(i, now) {
  return {
    deviceId: `SMK-${String(i % DEVICES).padStart(4, '0')}`,
    model: 'smoke-json',
    kind: 'smoke',
    // Distinct timestamps per device, so that InfluxDB keeps every point (same series + time overwrites).
    ts: now - points + i,
    receivedAt: now - points + i,
    metrics: { battery_pct: 85, rssi_dbm: -71 },
    state: { smoke: false, tamper: false, fault: false, battery_low: false },
    events: ['heartbeat'],
    place: { grid: GRID, building: '7', room: 'B1-3' },
  };
}

async function main() {
  const work = mkdtempSync(join(tmpdir(), 'gridedge-drain-'));
  const influx = await startInfluxd(work);
  const store = openStore({ path: join(work, 'store.db'), clock: Date.now, logger });
  const sinkConfig = { type: 'influxdb1', url: influx.url, database: DB, createDatabase: true, batchSize, flushInterval: 1000 };
  try {
    // The cursor exists before the backlog, as it does when InfluxDB goes away under a running gateway.
    const sinks = createSinkSet([sinkConfig], store, logger);
    const now = Date.now();
    const tFill = performance.now();
    const pending = [];
    for (let i = 0; i < points; i++) pending.push(store.append(reading(i, now)));
    await Promise.all(pending);
    const fillMs = performance.now() - tFill;
    console.log(`backlog: ${points.toLocaleString('en-US')} readings stored in ${(fillMs / 1000).toFixed(1)} s`);

    const t0 = performance.now();
    sinks.start();
    const [health] = sinks.health();
    let depth = health?.depth ?? points;
    while (depth > 0) {
      await sleep(50);
      depth = sinks.health()[0]?.depth ?? 0;
    }
    const drainMs = performance.now() - t0;
    await sinks.stop();
    const inInflux = sum(await influxCountsByDevice(influx.url, DB));
    const drained = points / (drainMs / 1000);
    const peak = loadResult('ingest-peers')?.throughput?.find((r) => r.name === 'gridedge' && r.qos === 1)?.endToEnd;
    console.log(`drained ${points.toLocaleString('en-US')} points in ${(drainMs / 1000).toFixed(2)} s = ${rate(drained)} (batches of ${batchSize}); InfluxDB holds ${inInflux.toLocaleString('en-US')}`);
    if (peak) console.log(`= ${(drained / peak).toFixed(1)}× the peak QoS 1 ingest of the last side-by-side run (${rate(peak)})`);
    if (inInflux !== points) throw new Error(`InfluxDB holds ${inInflux}, expected ${points}`);
    saveResult('drain', { points, batchSize, fillMs, drainMs, pointsPerSecond: drained, peakIngest: peak ?? null });
  } finally {
    store.close();
    await influx.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

main().then(
  () => killChildren(),
  (err) => {
    console.error(err);
    killChildren();
    process.exitCode = 1;
  },
);
