#!/usr/bin/env node
// Ingest peers benchmark (not a test; issue 7 items 1 and 2): the same load from
// dist/simulators/load.js (the three MQTT models in turn — smoke-json, smoke-ctw, pager-json —
// QoS 0 and QoS 1) end to end into a real influxd
// through: gridedge (`gridedge start`, full pipeline + influxdb1 sink), a bare aedes broker (the
// broker alone, no InfluxDB: the ceiling), Mosquitto relaying to a small subscriber that batches
// line protocol into InfluxDB, and Node-RED 4 (MQTT in from Mosquitto → JSON → function →
// influxdb out), installed by this script into a scratch folder under /tmp (not a project
// dependency). `--part outage` stops influxd for 30 s under load and counts what gridedge and
// Node-RED lose.
//
//   node scripts/bench/ingest-peers.mjs [--part throughput|outage|all] [--seconds 6] [--connections 100]
//        [--in-flight 20] [--qos0-rate 20000] [--outage-rate 500] [--outage-seconds 30]
//
// Results go to scripts/bench/results/ingest-peers.json (run-all.mjs writes docs from them).
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import process from 'node:process';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import {
  DB, ROOT, cpuOf, flag, freePort, influxCountsByDevice, killChildren, loadResult, machine, mb, rate, sampleRss, saveResult,
  sleep, start, startBareAedes, startGateway, startInfluxd, startMosquitto, sum, waitForInflux, writeSite,
} from './lib.mjs';

const SELF = fileURLToPath(import.meta.url);

/** The MQTT models of the load, in turn, and the id prefix by which the peers' flows tell them apart. */
const MODELS_OF_LOAD = [
  ['smoke-json', 'SMK'],
  ['smoke-ctw', 'CTW'],
  ['pager-json', 'PGR'],
];

/**
 * What a user's own flow does with each vendor's JSON (the peers: the relay and Node-RED): the
 * point SPEC §5 would have, picked by the device id's prefix. Self-contained, because its source is
 * also the Node-RED function node's code.
 */
function peerPoint(id, p) {
  if (id.startsWith('CTW-')) {
    const s = (p.payload && p.payload.serviceData) || {};
    return { measurement: 'smoke', time: p.timestamp, fields: { battery_low: s.Battery_Level < 20, battery_pct: s.Battery_Level, rssi_dbm: s.RSRP, alarm_status: s.Alarm_Status } };
  }
  if (id.startsWith('PGR-')) return { measurement: 'pager', time: p.ts, fields: { battery_low: p.battery < 20, battery_pct: p.battery, events: String(p.event) } };
  return { measurement: 'smoke', time: p.ts, fields: { battery_low: p.battery < 20, battery_pct: p.battery, smoke: Boolean(p.smoke) } };
}

/** The point as line protocol (the relay writes it itself). */
function peerLine(id, p) {
  const pt = peerPoint(id, p);
  const fields = Object.entries(pt.fields)
    .filter(([, v]) => v !== undefined && !(typeof v === 'number' && Number.isNaN(v)))
    .map(([k, v]) => `${k}=${typeof v === 'string' ? JSON.stringify(v) : v}`)
    .join(',');
  return `${pt.measurement},device_id=${id} ${fields} ${pt.time}`;
}

// ---- child mode: the relay subscriber (Mosquitto → InfluxDB) -------------------------------------
// What a user would write next to Mosquitto: subscribe dev/+/up, parse, batch line protocol
// (5000 points or 100 ms), POST /write, at most 4 writes in flight. A failed write is dropped.
if (process.argv[2] === '--relay') {
  const [, , , mqttUrl, influxUrl, qosArg] = process.argv;
  const mqtt = await import('mqtt');
  let batch = [];
  let inFlight = 0;
  let dropped = 0;
  let lastError;
  let received = 0;
  const flush = () => {
    if (batch.length === 0 || inFlight >= 4) return;
    const body = batch.join('\n');
    const n = batch.length;
    batch = [];
    inFlight++;
    fetch(`${influxUrl}/write?db=${DB}&precision=ms`, { method: 'POST', body })
      .then(async (r) => {
        const text = await r.text();
        if (r.status !== 204) {
          dropped += n;
          if (!lastError) process.stdout.write(`relay write ${r.status}: ${text.slice(0, 300)}\n`);
          lastError = text;
        }
      })
      .catch((err) => {
        dropped += n;
        if (!lastError) process.stdout.write(`relay write failed: ${err.message}\n`);
        lastError = err.message;
      })
      .finally(() => {
        inFlight--;
        if (batch.length >= 5000) flush();
      });
  };
  setInterval(flush, 100);
  const client = mqtt.connect(mqttUrl, { clientId: 'bench-relay', clean: true, reconnectPeriod: 500 });
  client.on('connect', () => {
    client.stream.setNoDelay?.(true);
    client.subscribe('dev/+/up', { qos: Number(qosArg) }, () => process.stdout.write('relay subscribed\n'));
  });
  client.on('message', (topic, payload) => {
    received++;
    const id = topic.slice(4, topic.length - 3);
    try {
      const p = JSON.parse(payload.toString('utf8'));
      batch.push(peerLine(id, p));
    } catch {
      dropped++;
    }
    if (batch.length >= 5000) flush();
  });
  process.on('SIGTERM', () => {
    process.stdout.write(`relay received ${received} dropped ${dropped}\n`);
    client.end(true, () => process.exit(0));
  });
  await new Promise(() => {});
}

// ---- options ------------------------------------------------------------------------------------
const partArg = process.argv.indexOf('--part') >= 0 ? process.argv[process.argv.indexOf('--part') + 1] : 'all';
const SECONDS = flag('seconds', 6);
const CONNECTIONS = flag('connections', 100);
const IN_FLIGHT = flag('in-flight', 20);
const QOS0_RATE = flag('qos0-rate', 20_000);
const OUTAGE_RATE = flag('outage-rate', 500);
const OUTAGE_SECONDS = flag('outage-seconds', 30);
const DRAIN_CAP_MS = flag('drain-cap', 30) * 1000;
const WARMUP_MS = 1_000;
const NODE_RED_DIR = join(tmpdir(), 'gridedge-bench-nodered');

for (const f of ['dist/simulators/load.js', 'dist/gateway/registry/secrets.js', 'dist/gateway/cli/main.js']) {
  if (!existsSync(join(ROOT, f))) throw new Error(`${f} is missing: run \`npm run build\``);
}
const { runLoad } = await import(join(ROOT, 'dist/simulators/load.js'));
const { hashSecret } = await import(join(ROOT, 'dist/gateway/registry/secrets.js'));
const { getModel } = await import(join(ROOT, 'dist/devices/catalogue.js'));

const SECRET = 'bench-secret-shared';
const devices = Array.from({ length: CONNECTIONS }, (_, i) => {
  const [model, prefix] = MODELS_OF_LOAD[i % MODELS_OF_LOAD.length];
  return { id: `${prefix}-${String(i).padStart(4, '0')}`, secret: SECRET, model: getModel(model) };
});
const work = mkdtempSync(join(tmpdir(), 'gridedge-bench-peers-'));

/** One load run against `url`. QoS 1: paced by in-flight; QoS 0: open loop at QOS0_RATE. */
async function load(url, qos, { seconds = SECONDS, ratePerSecond, maxInFlight = IN_FLIGHT, onStart = () => {}, onTick } = {}) {
  let t0 = 0;
  let inWindow = 0;
  const summary = await runLoad({
    url,
    devices,
    ratePerSecond: ratePerSecond ?? (qos === 1 ? 200_000 : QOS0_RATE),
    durationMs: seconds * 1000,
    qos,
    maxInFlight,
    drainMs: 30_000,
    onProgress: (p) => {
      if (t0 === 0) {
        t0 = performance.now();
        onStart();
      }
      onTick?.(p, performance.now() - t0);
    },
    progressMs: 50,
    onAck: () => {
      const at = performance.now() - t0;
      if (t0 > 0 && at >= WARMUP_MS && at < seconds * 1000) inWindow++;
    },
  });
  const window = (seconds * 1000 - WARMUP_MS) / 1000;
  return { summary, sustained: qos === 1 ? inWindow / window : summary.ratePerSecond, t0 };
}

async function resetDb(influx) {
  const q = (text) => fetch(`${influx.url}/query`, { method: 'POST', body: new URLSearchParams({ q: text }) }).then((r) => r.text());
  await q(`DROP DATABASE ${DB}`);
  // CREATE right after DROP has been seen not to stick on influxd 1.6.7: check with a test write.
  for (let i = 0; i < 50; i++) {
    await q(`CREATE DATABASE ${DB}`);
    await sleep(100);
    const w = await fetch(`${influx.url}/write?db=${DB}&precision=ms`, { method: 'POST', body: 'probe v=1 1' });
    if (w.status === 204) return;
  }
  throw new Error('influxd: could not create the database');
}

/** Runs the load, then waits for InfluxDB; returns the figures of one system. */
async function measure(name, influx, brokerUrl, qos, pid, extra = {}) {
  const rss = pid ? sampleRss(pid) : () => 0;
  const cpu0 = pid ? cpuOf(pid) : 0;
  const { summary, sustained, t0 } = await load(brokerUrl, qos);
  const delivered = qos === 1 ? summary.acked : summary.sent;
  let influxFig = {};
  if (influx) {
    const w = await waitForInflux(influx.url, DB, delivered, { maxMs: DRAIN_CAP_MS });
    const elapsed = (w.at - (performance.timeOrigin + t0)) / 1000;
    influxFig = { inInflux: w.total, endToEnd: w.total / elapsed, lost: Math.max(0, delivered - w.total), drainCapped: w.total < delivered };
  }
  const fig = {
    name,
    qos,
    sent: summary.sent,
    acked: summary.acked,
    sustained,
    latencyMs: summary.latencyMs,
    maxRss: rss(),
    cpuPerMsgUs: pid && summary.sent ? ((cpuOf(pid) - cpu0) / summary.sent) * 1e6 : undefined,
    ...influxFig,
    ...extra,
  };
  console.log(
    `  ${name} QoS ${qos}: ${rate(sustained)} ${qos === 1 ? 'PUBACKs' : 'sent'}` +
      (influx ? `; ${rate(fig.endToEnd)} into InfluxDB (${fig.inInflux} of ${delivered}${fig.drainCapped ? `, drain capped at ${DRAIN_CAP_MS / 1000} s` : ''})` : '') +
      (pid ? `; RSS ${mb(fig.maxRss)}; ${fig.cpuPerMsgUs?.toFixed(1)} µs CPU a message` : ''),
  );
  return fig;
}

// ---- systems ----------------------------------------------------------------------------------
async function runBare(qos) {
  const { proc, url } = await startBareAedes();
  try {
    return await measure('bare aedes', undefined, url, qos, proc.pid);
  } finally {
    await proc.stop();
  }
}

async function runGateway(influx, qos, hash, tag) {
  await resetDb(influx);
  const config = writeSite(join(work, `gw-${tag}`), { devices, hash, influxUrl: influx.url });
  const proc = startGateway(config);
  const port = Number((await proc.line)[1]);
  try {
    return await measure('gridedge', influx, `mqtt://127.0.0.1:${port}`, qos, proc.pid);
  } finally {
    await proc.stop(30_000);
  }
}

async function runMosquittoRelay(influx, qos, tag) {
  await resetDb(influx);
  const mq = await startMosquitto(work, `mq-${tag}`);
  const relay = start(process.execPath, [SELF, '--relay', mq.url, influx.url, String(qos)], { ready: /relay subscribed/ });
  try {
    await relay.line;
    const fig = await measure('Mosquitto + relay', influx, mq.url, qos, mq.proc.pid);
    await relay.stop();
    fig.relay = relay.output().trim().split('\n').slice(-3).join(' | ');
    console.log(`    ${fig.relay}`);
    return fig;
  } finally {
    await relay.stop();
    await mq.proc.stop();
  }
}

function ensureNodeRed() {
  const red = join(NODE_RED_DIR, 'node_modules/node-red/red.js');
  const contrib = join(NODE_RED_DIR, 'node_modules/node-red-contrib-influxdb/package.json');
  if (!existsSync(red) || !existsSync(contrib)) {
    console.log(`installing node-red@4 and node-red-contrib-influxdb into ${NODE_RED_DIR} …`);
    mkdirSync(NODE_RED_DIR, { recursive: true });
    execFileSync('npm', ['install', '--prefix', NODE_RED_DIR, '--no-audit', '--no-fund', 'node-red@4', 'node-red-contrib-influxdb'], { stdio: 'inherit', timeout: 300_000 });
  }
  const version = JSON.parse(execFileSync(process.execPath, ['-p', `JSON.stringify([require('${NODE_RED_DIR}/node_modules/node-red/package.json').version, require('${contrib}').version])`]).toString());
  return { red, version: version[0], contribVersion: version[1] };
}

async function startNodeRed(mqUrl, influx, qos, tag) {
  const { red } = ensureNodeRed();
  const userDir = join(work, `nodered-${tag}`);
  mkdirSync(join(userDir, 'node_modules'), { recursive: true });
  symlinkSync(join(NODE_RED_DIR, 'node_modules/node-red-contrib-influxdb'), join(userDir, 'node_modules/node-red-contrib-influxdb'));
  writeFileSync(join(userDir, 'package.json'), JSON.stringify({ name: 'bench-nodered', version: '0.0.0', dependencies: { 'node-red-contrib-influxdb': '*' } }));
  const uiPort = await freePort();
  const mqPort = new URL(mqUrl).port;
  const influxPort = new URL(influx.url).port;
  writeFileSync(
    join(userDir, 'settings.js'),
    `module.exports = ${JSON.stringify({
      uiPort,
      uiHost: '127.0.0.1',
      userDir,
      flowFile: 'flows.json',
      credentialSecret: false,
      httpAdminRoot: false,
      httpNodeRoot: false,
      disableEditor: true,
      logging: { console: { level: 'info', metrics: false, audit: false } },
    })};\n`,
  );
  const flow = [
    { id: 'tab1', type: 'tab', label: 'bench' },
    { id: 'broker1', type: 'mqtt-broker', name: 'mosquitto', broker: '127.0.0.1', port: mqPort, clientid: `nodered-bench-${tag}`, autoConnect: true, usetls: false, protocolVersion: '4', keepalive: '60', cleansession: true },
    { id: 'in1', type: 'mqtt in', z: 'tab1', name: 'devices', topic: 'dev/+/up', qos: String(qos), datatype: 'utf8', broker: 'broker1', nl: false, rap: true, rh: 0, inputs: 0, wires: [['json1']] },
    { id: 'json1', type: 'json', z: 'tab1', property: 'payload', action: 'obj', pretty: false, wires: [['fn1']] },
    {
      id: 'fn1',
      type: 'function',
      z: 'tab1',
      name: 'to point',
      func: `${peerPoint.toString()}\nconst id = msg.topic.split('/')[1]; const pt = peerPoint(id, msg.payload); msg.measurement = pt.measurement; msg.payload = [{ ...pt.fields, time: pt.time }, { device_id: id }]; return msg;`,
      outputs: 1,
      wires: [['out1']],
    },
    { id: 'db1', type: 'influxdb', hostname: '127.0.0.1', port: influxPort, protocol: 'http', database: DB, name: 'influx', usetls: false, influxdbVersion: '1.x' },
    { id: 'out1', type: 'influxdb out', z: 'tab1', influxdb: 'db1', name: 'influx out', measurement: '', precision: 'ms', retentionPolicy: '', wires: [] },
  ];
  writeFileSync(join(userDir, 'flows.json'), JSON.stringify(flow));
  const proc = start(process.execPath, [red, '-u', userDir, '-s', join(userDir, 'settings.js')], { cwd: userDir, ready: /Connected to broker/, timeoutMs: 90_000 });
  await proc.line;
  if (/Missing node types|influxdb out.*not installed|Waiting for missing types/.test(proc.output())) throw new Error(`Node-RED did not load the influxdb nodes:\n${proc.output()}`);
  return proc;
}

async function runNodeRed(influx, qos, tag) {
  await resetDb(influx);
  const mq = await startMosquitto(work, `mq-nr-${tag}`);
  const nr = await startNodeRed(mq.url, influx, qos, tag);
  try {
    const fig = await measure('Node-RED', influx, mq.url, qos, nr.pid);
    fig.errorsLogged = (nr.output().match(/\[error\]/g) ?? []).length;
    return fig;
  } finally {
    await nr.stop();
    await mq.proc.stop();
  }
}

// ---- outage: influxd stopped for OUTAGE_SECONDS under load -----------------------------------------
async function outage(name, influx, brokerUrl) {
  const seconds = OUTAGE_SECONDS + 15;
  let stopped = false;
  let restarted;
  let backAt = 0;
  let ackedSoFar = 0;
  const samples = [];
  const { summary } = await load(brokerUrl, 1, {
    seconds,
    ratePerSecond: OUTAGE_RATE,
    maxInFlight: 1000,
    onTick: (p, at) => {
      ackedSoFar = p.acked;
      if (!stopped && at >= 5_000) {
        stopped = true;
        restarted = (async () => {
          await influx.stop();
          console.log(`    influxd stopped at ${(at / 1000).toFixed(1)} s`);
          await sleep(OUTAGE_SECONDS * 1000);
          await influx.start();
          backAt = performance.now();
          console.log('    influxd back');
          // Catch-up: how fast the backlog reaches InfluxDB once it is back (sampled every 250 ms).
          for (let i = 0; i < 240; i++) {
            const n = sum(await influxCountsByDevice(influx.url, DB));
            samples.push({ at: performance.now() - backAt, n, sentAcked: ackedSoFar });
            if (n >= ackedSoFar && performance.now() - backAt > 1_000) break;
            await sleep(250);
          }
        })();
      }
    },
  });
  await restarted;
  const w = await waitForInflux(influx.url, DB, summary.acked, { stableMs: 15_000, maxMs: 120_000 });
  // Drain rate: points that reached InfluxDB from its restart until it caught up with the PUBACKs.
  const first = samples[0];
  const caught = samples.find((x) => x.n >= x.sentAcked && x.at > 1_000) ?? samples[samples.length - 1];
  const drain = first && caught && caught.at > 0 ? { points: caught.n - first.n, seconds: caught.at / 1000, caughtUp: caught.n >= caught.sentAcked } : undefined;
  if (drain) {
    drain.rate = drain.points / Math.max(0.25, drain.seconds);
    // The same from the first sample in which InfluxDB grew (leaves out the writer's retry backoff).
    const moved = samples.find((x) => x.n > first.n);
    if (moved && caught.at > moved.at) {
      drain.afterFirstWrite = { points: caught.n - moved.n, seconds: (caught.at - moved.at) / 1000, waitedSeconds: moved.at / 1000 };
      drain.afterFirstWrite.rate = drain.afterFirstWrite.points / drain.afterFirstWrite.seconds;
    }
  }
  const fig = { name, acked: summary.acked, sent: summary.sent, inInflux: w.total, lost: Math.max(0, summary.acked - w.total), offeredRate: OUTAGE_RATE, drain };
  console.log(`  ${name}: ${fig.acked} PUBACKed, ${fig.inInflux} in InfluxDB, lost ${fig.lost}; after the restart ${drain ? `${drain.points} points in ${drain.seconds.toFixed(1)} s = ${rate(drain.rate)}${drain.caughtUp ? '' : ' (not caught up)'}${drain.afterFirstWrite ? `; first write ${drain.afterFirstWrite.waitedSeconds.toFixed(1)} s after the restart, then ${rate(drain.afterFirstWrite.rate)}` : ''}` : 'n/a'}`);
  return fig;
}

async function outageGateway(influx, hash) {
  await resetDb(influx);
  const config = writeSite(join(work, 'gw-outage'), { devices, hash, influxUrl: influx.url });
  const proc = startGateway(config);
  const port = Number((await proc.line)[1]);
  try {
    return await outage('gridedge', influx, `mqtt://127.0.0.1:${port}`);
  } finally {
    await proc.stop(30_000);
  }
}

async function outageNodeRed(influx) {
  await resetDb(influx);
  const mq = await startMosquitto(work, 'mq-nr-outage');
  const nr = await startNodeRed(mq.url, influx, 1, 'outage');
  try {
    const fig = await outage('Node-RED', influx, mq.url);
    fig.errorsLogged = (nr.output().match(/\[error\]/g) ?? []).length;
    return fig;
  } finally {
    await nr.stop();
    await mq.proc.stop();
  }
}

// ---- main -----------------------------------------------------------------------------------
let influx;
const previous = loadResult('ingest-peers') ?? {};
const result = { ...previous, machine: machine(), options: { SECONDS, CONNECTIONS, IN_FLIGHT, QOS0_RATE, OUTAGE_RATE, OUTAGE_SECONDS, DRAIN_CAP_MS } };
try {
  console.log(`machine: ${JSON.stringify(result.machine)}`);
  const nrv = ensureNodeRed();
  result.nodeRed = { version: nrv.version, contribVersion: nrv.contribVersion };
  influx = await startInfluxd(work);
  const hash = await hashSecret(SECRET);
  if (partArg === 'relay-only') {
    console.log(await runMosquittoRelay(influx, 1, 'dbg'));
  }
  if (partArg === 'all' || partArg === 'throughput') {
    result.throughput = [];
    result.throughputAt = new Date().toISOString();
    result.throughputLoad = machine().load;
    for (const qos of [0, 1]) {
      console.log(`QoS ${qos}:`);
      result.throughput.push(await runBare(qos));
      result.throughput.push(await runGateway(influx, qos, hash, `q${qos}`));
      result.throughput.push(await runMosquittoRelay(influx, qos, `q${qos}`));
      result.throughput.push(await runNodeRed(influx, qos, `q${qos}`));
      saveResult('ingest-peers', result);
    }
  }
  if (partArg === 'all' || partArg === 'outage') {
    console.log(`outage: influxd stopped ${OUTAGE_SECONDS} s under ${OUTAGE_RATE} msg/s QoS 1:`);
    result.outageAt = new Date().toISOString();
    result.outageLoad = machine().load;
    result.outage = [await outageGateway(influx, hash), await outageNodeRed(influx)];
    saveResult('ingest-peers', result);
  }
  console.log('saved scripts/bench/results/ingest-peers.json');
} finally {
  await influx?.stop();
  killChildren();
  if (!process.argv.includes('--keep')) rmSync(work, { recursive: true, force: true });
}
