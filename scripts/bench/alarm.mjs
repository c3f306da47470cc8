#!/usr/bin/env node
// Alarm latency benchmark (issue 7 §3; not a test): a pager-json SOS publish → its incident
// arriving at a city-side subscriber of a real upstream Mosquitto, under telemetry background
// load of each rate in --rates, each on a fresh gateway and data directory. Everything on
// 127.0.0.1, bounded; writes scripts/bench/results/alarm.json.
//   npm run bench:alarm [-- --rates 1000,5000,10000 --alarms 1000 --alarm-rate 25]
//
// Processes: the gateway is `gridedge start` (a child process, with its own event loop),
// Mosquitto a child process, the load generator a worker thread; the pagers and the city
// subscriber (the two ends of the measurement) run on the main thread, which does nothing else.
// Each SOS comes from a fresh pager, so each opens a new incident (a second press would fold, SPEC §7).
import console from 'node:console';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import process from 'node:process';
import { fileURLToPath } from 'node:url';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { ROOT, flag, killChildren, machine, saveResult, sleep, startGateway, startMosquitto, writeSite } from './lib.mjs';

const dist = (p) => join(ROOT, 'dist', p);

// ---- the load worker ----------------------------------------------------------------------
if (!isMainThread) {
  const { runLoad } = await import(dist('simulators/load.js'));
  const { MODELS } = await import(dist('devices/catalogue.js'));
  const { url, devices, ratePerSecond, durationMs } = workerData;
  const summary = await runLoad({
    url,
    devices: devices.map((d) => ({ ...d, model: MODELS.get(d.model) })),
    ratePerSecond,
    durationMs,
    qos: 1,
    drainMs: 5_000,
    onProgress: (p) => parentPort.postMessage({ progress: p }),
    progressMs: 1_000,
  });
  const { ledger: _ledger, ...rest } = summary;
  parentPort.postMessage({ summary: rest });
  process.exit(0);
}

// ---- main ---------------------------------------------------------------------------------
const rateIdx = process.argv.indexOf('--rates');
const RATES = rateIdx > 0 ? process.argv[rateIdx + 1].split(',').map(Number) : [1000, 5000, 10_000];
if (RATES.some((r) => !Number.isFinite(r) || r < 0)) throw new Error('--rates needs rates such as 1000,5000,10000');
const ALARMS = flag('alarms', 1000);
const ALARM_RATE = flag('alarm-rate', 25);
const LOAD_DEVICES = 200;
const PREFIX = 'city/110101013';
const HARD_LIMIT_MS = 120_000 + RATES.length * ((ALARMS / ALARM_RATE) * 1000 + 60_000);

const { MODELS } = await import(dist('devices/catalogue.js'));
const { hashSecret } = await import(dist('gateway/registry/secrets.js'));
const { createMqttDevice } = await import(dist('simulators/mqtt-device.js'));
const mqtt = (await import('mqtt')).default;

const quantile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
const round = (ms) => Number(ms.toFixed(2));

/** One rate: a fresh gateway on a fresh data dir, the same upstream. */
async function measure(work, upUrl, hash, secret, loadRate) {
  const dir = join(work, `rate-${loadRate}`);
  const load = Array.from({ length: LOAD_DEVICES }, (_, i) => ({ id: `SMK-L${String(i).padStart(4, '0')}`, secret, model: MODELS.get('smoke-json') }));
  const pagers = Array.from({ length: ALARMS }, (_, i) => ({ id: `PGR-A${String(i).padStart(4, '0')}`, model: MODELS.get('pager-json') }));
  const config = writeSite(dir, {
    devices: [...load, ...pagers],
    hash,
    extraYaml: [`uplink: { url: "${upUrl}", prefix: ${PREFIX} }`, 'escalation: { critical: 60s, major: 5m, minor: 30m, info: none }'],
  });
  const gw = startGateway(config);
  const gwUrl = `mqtt://127.0.0.1:${(await gw.line)[1]}`;

  // The city side: QoS 1 on every incident of the prefix, Nagle off (DESIGN.md).
  const pending = new Map(); // deviceId → performance.now() at publish
  const latencies = [];
  let extra = 0;
  const city = await mqtt.connectAsync(upUrl, { clientId: `bench-city-${loadRate}`, protocolVersion: 4, reconnectPeriod: 0 });
  city.stream.setNoDelay?.(true);
  city.on('message', (topic, payload) => {
    const t1 = performance.now();
    if (!topic.includes('/incidents/')) return;
    const inc = JSON.parse(payload.toString());
    if (inc.type !== 'sos' || inc.version !== 1) return;
    const t0 = pending.get(inc.deviceIds[0]);
    if (t0 === undefined) {
      extra++;
      return;
    }
    pending.delete(inc.deviceIds[0]);
    latencies.push(t1 - t0);
  });
  await city.subscribeAsync(`${PREFIX}/+/incidents/#`, { qos: 1 });

  // Pagers connect first (no alarms yet), 50 at a time.
  const devices = [];
  for (let i = 0; i < pagers.length; i += 50) {
    const batch = pagers.slice(i, i + 50).map((p) => createMqttDevice({ url: gwUrl, deviceId: p.id, secret, model: p.model, heartbeatMs: 0, respond: false }));
    await Promise.all(batch.map((d) => d.start()));
    devices.push(...batch);
  }

  // Background load in a worker thread, running past the last alarm.
  const alarmPhaseMs = (ALARMS / ALARM_RATE) * 1000;
  const warmMs = 3_000;
  let progress;
  const loadDone =
    loadRate > 0
      ? new Promise((res, rej) => {
          const w = new Worker(fileURLToPath(import.meta.url), {
            workerData: { url: gwUrl, devices: load.map((d) => ({ id: d.id, secret, model: 'smoke-json' })), ratePerSecond: loadRate, durationMs: warmMs + alarmPhaseMs + 2_000 },
          });
          w.on('message', (m) => {
            if (m.progress) progress = m.progress;
            if (m.summary) res(m.summary);
          });
          w.once('error', rej);
          w.once('exit', (c) => c !== 0 && rej(new Error(`load worker exited ${c}`)));
        })
      : Promise.resolve(undefined);
  if (loadRate > 0) await sleep(warmMs);
  const atStart = progress;

  // The alarms, paced; each measured on its own (they may overlap).
  const t0All = performance.now();
  for (let i = 0; i < devices.length; i++) {
    const wait = t0All + (i * 1000) / ALARM_RATE - performance.now();
    if (wait > 0) await sleep(wait);
    const d = devices[i];
    pending.set(d.deviceId, performance.now());
    d.alarm('sos').catch((err) => console.error(`sos ${d.deviceId}: ${err.message}`));
  }
  const waitEnd = performance.now() + 10_000;
  while (pending.size > 0 && performance.now() < waitEnd) await sleep(50);
  const atEnd = progress;
  const summary = await loadDone;

  await Promise.all(devices.map((d) => d.stop({ abrupt: true }).catch(() => {})));
  await city.endAsync(true);
  await gw.stop();

  const sorted = [...latencies].sort((a, b) => a - b);
  const acked = atStart && atEnd ? ((atEnd.acked - atStart.acked) * 1000) / (atEnd.elapsedMs - atStart.elapsedMs) : (summary?.ratePerSecond ?? 0);
  return {
    loadTarget: loadRate,
    loadAckedPerSecondDuringAlarms: Math.round(acked),
    alarms: ALARMS,
    received: latencies.length,
    missing: pending.size,
    unexpected: extra,
    latencyMs: { p50: round(quantile(sorted, 0.5)), p99: round(quantile(sorted, 0.99)), max: round(sorted.at(-1)) },
    load: summary ? { sent: summary.sent, acked: summary.acked, unacked: summary.unacked, errors: summary.errors, connections: summary.connections, pubackLatencyMs: summary.latencyMs } : null,
    loadAverageAfter: os.loadavg().map((l) => Number(l.toFixed(2))),
  };
}

async function main() {
  const work = mkdtempSync(join(os.tmpdir(), 'gridedge-bench-alarm-'));
  const hard = setTimeout(() => {
    console.error(`bench alarm: over ${HARD_LIMIT_MS / 1000} s, giving up`);
    killChildren();
    process.exit(2);
  }, HARD_LIMIT_MS);
  try {
    const up = await startMosquitto(work, 'upstream');
    // One scrypt hash for every row (same secret): a valid hash, and setup stays short.
    const secret = 'bench-alarm-secret';
    const hash = await hashSecret(secret);
    const runs = [];
    for (const loadRate of RATES) {
      console.log(`\nbackground ${loadRate} msg/s: ${ALARMS} SOS at ${ALARM_RATE}/s …`);
      const r = await measure(work, up.url, hash, secret, loadRate);
      runs.push(r);
      console.log(
        `  ${r.received}/${r.alarms} incidents upstream (${r.missing} missing, ${r.unexpected} unexpected), ${r.loadAckedPerSecondDuringAlarms} telemetry msg/s acked: ` +
          `p50 ${r.latencyMs.p50} ms  p99 ${r.latencyMs.p99} ms  max ${r.latencyMs.max} ms`,
      );
    }
    await up.proc.stop();
    saveResult('alarm', { options: { RATES, ALARMS, ALARM_RATE, LOAD_DEVICES }, runs });
    const at5k = runs.find((r) => r.loadTarget === 5000);
    if (at5k) console.log(`\ngoal p99 < 10 ms at 5k msg/s: ${at5k.latencyMs.p99 < 10 && at5k.missing === 0 ? 'met' : 'MISSED'} (${at5k.latencyMs.p99} ms); ${JSON.stringify(machine())}`);
    if (runs.some((r) => r.missing > 0)) process.exitCode = 1;
  } finally {
    clearTimeout(hard);
    killChildren();
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  killChildren();
  process.exitCode = 1;
});
