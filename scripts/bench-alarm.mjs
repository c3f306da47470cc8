#!/usr/bin/env node
// Alarm latency benchmark (not a test): a pager-json SOS publish → the incident arriving at a
// city-side subscriber of the upstream Mosquitto (after the upstream broker took it), with
// telemetry background load from dist/simulators/load.js. Everything on 127.0.0.1, bounded.
//   npm run bench:alarm [-- --alarms 1000 --rate 5000 --alarm-rate 25]
//
// Processes: the gateway is `gridedge start` (a child process, so it has its own event loop),
// Mosquitto is a child process on a free port with a temp config, the load generator runs in a
// worker thread; the pagers and the city subscriber (the two ends of the measurement) run on the
// main thread, which does nothing else. Each SOS comes from a fresh pager, so each one opens a
// new incident (one active incident per (rule, device), SPEC §7: a second press would fold).
import console from 'node:console';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import process from 'node:process';
import { fileURLToPath } from 'node:url';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
const dist = (p) => join(ROOT, 'dist', p);

// ---- the load worker ----------------------------------------------------------------------
if (!isMainThread) {
  const { runLoad } = await import(dist('simulators/load.js'));
  const { MODELS } = await import(dist('devices/catalogue.js'));
  const { url, devices, ratePerSecond, durationMs } = workerData;
  const abort = new AbortController();
  parentPort.on('message', (m) => m === 'stop' && abort.abort());
  const summary = await runLoad({
    url,
    devices: devices.map((d) => ({ ...d, model: MODELS.get(d.model) })),
    ratePerSecond,
    durationMs,
    qos: 1,
    drainMs: 5_000,
    signal: abort.signal,
    onProgress: (p) => parentPort.postMessage({ progress: p }),
    progressMs: 1_000,
  });
  const { ledger: _ledger, ...rest } = summary;
  parentPort.postMessage({ summary: rest });
  process.exit(0);
}

// ---- main ---------------------------------------------------------------------------------
const arg = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const ALARMS = arg('alarms', 1000);
const LOAD_RATE = arg('rate', 5000);
const ALARM_RATE = arg('alarm-rate', 25);
const LOAD_DEVICES = 200;
const GRID = '110101013001002';
const PREFIX = 'city/110101013';
const HARD_LIMIT_MS = 150_000;

const { MODELS } = await import(dist('devices/catalogue.js'));
const { hashSecret } = await import(dist('gateway/registry/secrets.js'));
const { DEVICE_COLUMNS } = await import(dist('gateway/registry/columns.js'));
const { createMqttDevice } = await import(dist('simulators/mqtt-device.js'));
const mqtt = (await import('mqtt')).default;

const started = [];
const dir = mkdtempSync(join(os.tmpdir(), 'gridedge-bench-alarm-'));
const hard = setTimeout(() => {
  console.error(`bench-alarm: over ${HARD_LIMIT_MS / 1000} s, giving up`);
  void shutdown(2);
}, HARD_LIMIT_MS);

function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

/** Spawns a child; resolves once a line of its output matches `ready`. */
function startChild(name, cmd, args, ready, opts = {}) {
  return new Promise((res, rej) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    started.push(child);
    let out = '';
    const timer = setTimeout(() => rej(new Error(`${name} not ready in 30 s:\n${out}`)), 30_000);
    const onData = (b) => {
      out += b.toString();
      if (out.length > 65_536) out = out.slice(-65_536);
      const m = ready.exec(out);
      if (m) {
        clearTimeout(timer);
        res({ child, match: m, output: () => out });
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('exit', (code, sig) => {
      clearTimeout(timer);
      rej(new Error(`${name} exited (${code ?? sig}):\n${out}`));
    });
  });
}

/** Ends only the children this script started, by their PIDs. */
async function shutdown(code) {
  clearTimeout(hard);
  for (const c of started.reverse()) {
    if (c.exitCode !== null || c.signalCode !== null) continue;
    const gone = new Promise((r) => c.once('exit', r));
    c.kill('SIGTERM');
    const t = setTimeout(() => c.kill('SIGKILL'), 5_000);
    await gone;
    clearTimeout(t);
  }
  rmSync(dir, { recursive: true, force: true });
  process.exit(code);
}

const quantile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
const fmt = (ms) => ms.toFixed(2);

try {
  // Mosquitto upstream (as tests/helpers/mosquitto.ts, in plain JS).
  const upPort = await freePort();
  writeFileSync(
    join(dir, 'mosquitto.conf'),
    [`listener ${upPort} 127.0.0.1`, 'allow_anonymous true', 'persistence false', 'log_dest stderr', 'log_type error', 'log_type warning', 'log_type notice', 'log_type information', ...(process.getuid?.() === 0 ? ['user root'] : []), ''].join('\n'),
  );
  const mosquitto = await startChild('mosquitto', 'mosquitto', ['-c', join(dir, 'mosquitto.conf')], /mosquitto version \S+ running/);
  const upUrl = `mqtt://127.0.0.1:${upPort}`;

  // Site: LOAD_DEVICES smoke-json for telemetry, ALARMS fresh pager-json devices. One scrypt hash
  // per model, reused for every row of it (same secret): a valid hash, and setup stays short.
  const secret = 'bench-alarm-secret';
  const hash = await hashSecret(secret);
  const loadDevices = Array.from({ length: LOAD_DEVICES }, (_, i) => ({ id: `SMK-L${String(i).padStart(4, '0')}`, secret, model: 'smoke-json' }));
  const pagers = Array.from({ length: ALARMS }, (_, i) => `PGR-A${String(i).padStart(4, '0')}`);
  const csv = [DEVICE_COLUMNS.join(',')];
  const row = (cells) => DEVICE_COLUMNS.map((c) => cells[c] ?? '').join(',');
  loadDevices.forEach((d, i) => csv.push(row({ id: d.id, model: 'smoke-json', grid: GRID, building: String(1 + (i % 20)), room: `L${i}`, secret: hash })));
  pagers.forEach((id, i) => csv.push(row({ id, model: 'pager-json', grid: GRID, building: String(1 + (i % 20)), room: `P${i}`, secret: hash })));
  writeFileSync(join(dir, 'devices.csv'), `${csv.join('\n')}\n`);
  const config = `gateway: { id: gw-bench-alarm, dataDir: ./data }
site:
  district: "110101"
  street: { code: "110101013", name: 东花市街道 }
  communities: [{ code: "001", name: 北里社区 }]
  grids: [{ code: "${GRID}", name: 第2网格 }]
mqtt:
  listen: { host: 127.0.0.1, port: 0 }
  rateLimit: { perSecond: 1000, burst: 5000 }
devices: ./devices.csv
sinks: [{ type: embedded }]
uplink: { url: "${upUrl}", prefix: ${PREFIX} }
rules: [builtin]
escalation: { critical: 60s, major: 5m, minor: 30m, info: none }
http: { host: 127.0.0.1, port: 0 }
`;
  writeFileSync(join(dir, 'gridedge.yaml'), config);
  const gw = await startChild('gridedge', process.execPath, [join(ROOT, 'bin/gridedge.js'), 'start', '-c', join(dir, 'gridedge.yaml'), '--log-level', 'warn'], /MQTT on [^\s,]+:(\d+),/, { cwd: dir });
  const gwUrl = `mqtt://127.0.0.1:${gw.match[1]}`;

  // The city side: QoS 1 on every incident of the prefix, Nagle off (DESIGN.md).
  const pending = new Map(); // deviceId → t0 (performance.now at publish)
  const latencies = [];
  let extra = 0;
  const city = await mqtt.connectAsync(upUrl, { clientId: 'bench-city', protocolVersion: 4, reconnectPeriod: 0 });
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
    const batch = pagers.slice(i, i + 50).map((id) => createMqttDevice({ url: gwUrl, deviceId: id, secret, model: MODELS.get('pager-json'), heartbeatMs: 0, respond: false }));
    await Promise.all(batch.map((d) => d.start()));
    devices.push(...batch);
  }

  // Background load in a worker thread, running past the last alarm.
  const alarmPhaseMs = (ALARMS / ALARM_RATE) * 1000;
  const warmMs = 3_000;
  let loadProgress;
  const loadDone = new Promise((res, rej) => {
    const w = new Worker(fileURLToPath(import.meta.url), { workerData: { url: gwUrl, devices: loadDevices, ratePerSecond: LOAD_RATE, durationMs: warmMs + alarmPhaseMs + 2_000 } });
    w.on('message', (m) => {
      if (m.progress) loadProgress = m.progress;
      if (m.summary) res(m.summary);
    });
    w.once('error', rej);
    w.once('exit', (c) => c !== 0 && rej(new Error(`load worker exited ${c}`)));
  });
  await new Promise((r) => setTimeout(r, warmMs));
  const loadAtStart = loadProgress;

  // The alarms, paced; each measured on its own (they may overlap).
  const t0All = performance.now();
  for (let i = 0; i < devices.length; i++) {
    const due = t0All + (i * 1000) / ALARM_RATE;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const d = devices[i];
    pending.set(d.deviceId, performance.now());
    d.alarm('sos').catch((err) => console.error(`sos ${d.deviceId}: ${err.message}`));
  }
  const waitEnd = performance.now() + 10_000;
  while (pending.size > 0 && performance.now() < waitEnd) await new Promise((r) => setTimeout(r, 50));
  const loadAtEnd = loadProgress;
  const summary = await loadDone;

  const sorted = [...latencies].sort((a, b) => a - b);
  const p50 = quantile(sorted, 0.5);
  const p99 = quantile(sorted, 0.99);
  const max = sorted.at(-1);
  const loadRate = loadAtStart && loadAtEnd ? ((loadAtEnd.acked - loadAtStart.acked) * 1000) / (loadAtEnd.elapsedMs - loadAtStart.elapsedMs) : summary.ratePerSecond;
  const cpus = os.cpus();
  const result = {
    date: new Date().toISOString(),
    machine: `${cpus[0]?.model ?? 'unknown CPU'}, ${cpus.length} cores, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.type()} ${os.release()}, Node ${process.version}, load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`,
    alarms: ALARMS,
    received: latencies.length,
    missing: pending.size,
    unexpected: extra,
    alarmRate: ALARM_RATE,
    loadTarget: LOAD_RATE,
    loadAckedPerSecondDuringAlarms: Math.round(loadRate),
    load: { sent: summary.sent, acked: summary.acked, unacked: summary.unacked, errors: summary.errors, connections: summary.connections, pubackLatencyMs: summary.latencyMs },
    latencyMs: { p50: Number(fmt(p50)), p99: Number(fmt(p99)), max: Number(fmt(max)) },
    goal: 'p99 < 10 ms',
    met: p99 < 10 && pending.size === 0,
  };
  console.log(JSON.stringify(result, null, 2));
  console.log(`\nSOS publish → incident at the city subscriber over ${latencies.length}/${ALARMS} alarms, ${result.loadAckedPerSecondDuringAlarms} telemetry msg/s acked in the background:`);
  console.log(`  p50 ${fmt(p50)} ms   p99 ${fmt(p99)} ms   max ${fmt(max)} ms   (goal p99 < 10 ms: ${result.met ? 'met' : 'MISSED'})`);
  void mosquitto;
  await Promise.all(devices.map((d) => d.stop({ abrupt: true }).catch(() => {})));
  await city.endAsync(true);
  await shutdown(pending.size === 0 ? 0 : 1);
} catch (err) {
  console.error(err);
  await shutdown(1);
}
