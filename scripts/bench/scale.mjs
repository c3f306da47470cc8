#!/usr/bin/env node
// Scale benchmark (not a test; issue 7 item 4): `gridedge start` with 10k registered devices
// (devices.csv), then 1k, 5k (and 10k) idle device connections from dist/simulators/load.js
// sending only heartbeats (QoS 1, one every HEARTBEAT s per device): the gateway's RSS and CPU
// once they are all connected, and its start-up time (spawn → "MQTT on" line) with 10k devices,
// on a fresh data dir and again on the existing store. No InfluxDB sink (embedded store only).
//
//   node scripts/bench/scale.mjs [--levels 1000,5000,10000] [--seconds 20] [--heartbeat 30]
//
// Results go to scripts/bench/results/scale.json.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import process from 'node:process';
import { ROOT, cpuOf, flag, killChildren, mb, rssOf, saveResult, sleep, startGateway, writeSite } from './lib.mjs';

const levelsArg = process.argv.indexOf('--levels') >= 0 ? process.argv[process.argv.indexOf('--levels') + 1] : '1000,5000,10000';
const LEVELS = levelsArg.split(',').map(Number);
const SECONDS = flag('seconds', 20);
const HEARTBEAT = flag('heartbeat', 30);
const REGISTERED = 10_000;

const { runLoad } = await import(join(ROOT, 'dist/simulators/load.js'));
const { hashSecret } = await import(join(ROOT, 'dist/gateway/registry/secrets.js'));
const { getModel } = await import(join(ROOT, 'dist/devices/catalogue.js'));
const SECRET = 'bench-secret-shared';
const models = ['smoke-json', 'smoke-ctw', 'pager-json'].map((m) => getModel(m));
const devices = Array.from({ length: REGISTERED }, (_, i) => ({ id: `SCALE-${String(i).padStart(5, '0')}`, secret: SECRET, model: models[i % models.length] }));
const work = mkdtempSync(join(tmpdir(), 'gridedge-bench-scale-'));

async function startTimed(config) {
  const t = performance.now();
  const proc = startGateway(config);
  const port = Number((await proc.line)[1]);
  return { proc, port, startMs: performance.now() - t };
}

const result = { options: { LEVELS, SECONDS, HEARTBEAT, REGISTERED }, startup: {}, levels: [] };
try {
  const hash = await hashSecret(SECRET);
  const config = writeSite(join(work, 'site'), { devices, hash });
  // Start-up with 10k registered devices: fresh data dir, then again on the store it left.
  {
    const a = await startTimed(config);
    result.startup.freshMs = a.startMs;
    result.startup.idleRss = rssOf(a.proc.pid);
    await a.proc.stop(30_000);
    const b = await startTimed(config);
    result.startup.existingMs = b.startMs;
    await b.proc.stop(30_000);
    console.log(`start-up with ${REGISTERED} registered devices: ${a.startMs.toFixed(0)} ms fresh, ${b.startMs.toFixed(0)} ms on the existing store; RSS ${mb(result.startup.idleRss)} with no device connected`);
  }
  for (const n of LEVELS) {
    const g = await startTimed(config);
    const rss0 = rssOf(g.proc.pid);
    let connectedAt = 0;
    let cpuAtConnected = 0;
    let maxRss = 0;
    const t0 = performance.now();
    const sampler = setInterval(() => (maxRss = Math.max(maxRss, rssOf(g.proc.pid))), 250);
    let rssConnected = 0;
    const summary = await runLoad({
      url: `mqtt://127.0.0.1:${g.port}`,
      devices,
      connections: n,
      ratePerSecond: n / HEARTBEAT,
      durationMs: SECONDS * 1000,
      qos: 1,
      drainMs: 10_000,
      connectConcurrency: 100,
      clientOptions: { keepalive: 60 },
      onProgress: () => {
        if (connectedAt === 0) {
          connectedAt = performance.now();
          cpuAtConnected = cpuOf(g.proc.pid);
          rssConnected = rssOf(g.proc.pid);
        }
      },
      progressMs: 1000,
    });
    const steadyS = (performance.now() - connectedAt) / 1000;
    const cpu = cpuOf(g.proc.pid) - cpuAtConnected;
    const rssEnd = rssOf(g.proc.pid);
    clearInterval(sampler);
    await g.proc.stop(30_000);
    const fig = {
      connections: summary.connections,
      connectFailures: summary.connectFailures,
      connectSeconds: (connectedAt - t0) / 1000,
      heartbeatsPerSecond: n / HEARTBEAT,
      acked: summary.acked,
      sent: summary.sent,
      rssBefore: rss0,
      rssConnected,
      rssEnd,
      maxRss: Math.max(maxRss, rssEnd),
      cpuPct: (cpu / steadyS) * 100,
      perClientKiB: (rssEnd - rss0) / 1024 / Math.max(1, summary.connections),
    };
    result.levels.push(fig);
    console.log(
      `  ${n} connections (${fig.connectFailures} failed) in ${fig.connectSeconds.toFixed(1)} s: RSS ${mb(rss0)} → ${mb(rssConnected)} connected → ${mb(rssEnd)} after ${SECONDS} s of heartbeats (max ${mb(fig.maxRss)}); ` +
        `CPU ${fig.cpuPct.toFixed(1)} % of a core at ${fig.heartbeatsPerSecond.toFixed(0)} heartbeats/s; ${fig.acked}/${fig.sent} acked; ${fig.perClientKiB.toFixed(1)} KiB a connection`,
    );
    saveResult('scale', result);
    await sleep(500);
  }
  console.log('saved scripts/bench/results/scale.json');
} finally {
  killChildren();
  rmSync(work, { recursive: true, force: true });
}
process.exit(0);
