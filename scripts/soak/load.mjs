#!/usr/bin/env node
// Load soak (issue 8 item 3; not a test): `gridedge start` with N registered devices, all
// connected, then a steady R telemetry msg/s plus every device's heartbeat and one alarm every
// few seconds for D seconds, QoS 1 with the PUBACK ledger; the gateway's RSS, CPU and event-loop
// delay sampled. The scenario is dist/simulators/soak/load-soak.js (run `npm run build` first);
// tests/integration/soak/load-soak.test.ts runs the same for 60 s in CI.
//
//   node scripts/soak/load.mjs [--devices 10000] [--rate 2000] [--seconds 600] [--heartbeat 30|model]
//                              [--alarms-per-minute 60] [--sample 5] [--warmup 120] [--concurrency 200]
//                              [--json FILE]
//
// The gateway inherits this process's environment (e.g. UV_THREADPOOL_SIZE=8 npm run soak:load).
//
// Prints a table of the samples, the figures and the checks; exits 1 when a check fails.
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

function arg(name) {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? undefined : process.argv[i + 1];
}
function num(name, fallback) {
  const text = arg(name);
  if (text === undefined) return fallback;
  const v = Number(text);
  if (!Number.isFinite(v) || v <= 0) {
    console.error(`--${name} needs a positive number, not ${JSON.stringify(text)}`);
    process.exit(2);
  }
  return v;
}

const seconds = num('seconds', 600);
const heartbeatArg = arg('heartbeat') ?? '30';
const options = {
  devices: Math.round(num('devices', 10_000)),
  ratePerSecond: num('rate', 2_000),
  durationS: seconds,
  ...(heartbeatArg === 'model' ? {} : { heartbeatS: num('heartbeat', 30) }),
  alarmsPerMinute: num('alarms-per-minute', 60),
  sampleEveryS: num('sample', 5),
  warmupS: num('warmup', Math.min(120, seconds * 0.2)),
  connectConcurrency: Math.round(num('concurrency', 200)),
};

const { runLoadSoak, formatSamples, soakFigures } = await import(join(ROOT, 'dist/simulators/soak/load-soak.js'));
const { hashSecret } = await import(join(ROOT, 'dist/gateway/registry/secrets.js'));
const SECRET = 'soak-secret-shared';

let gatewayPid;
const killGateway = () => {
  if (gatewayPid === undefined) return;
  try {
    process.kill(gatewayPid, 'SIGKILL');
  } catch {
    // gone already
  }
};
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => {
    killGateway();
    process.exit(130);
  });
}

let header = false;
const result = await runLoadSoak({
  ...options,
  secret: SECRET,
  secretHash: await hashSecret(SECRET),
  gridedgeBin: join(ROOT, 'bin/gridedge.js'),
  onGatewayStarted: (pid) => (gatewayPid = pid),
  onPhase: (text) => console.log(`# ${text}`),
  // One table row as each sample comes (the header with the first).
  onSample: (s) => {
    const [head, row] = formatSamples([s]);
    if (!header) console.log(head);
    header = true;
    console.log(row);
  },
});
gatewayPid = undefined;
console.log('');
console.log(formatSamples(result.samples).join('\n'));
console.log('');
for (const line of soakFigures(result)) console.log(line);
for (const c of result.checks) console.log(`CHECK ${c.ok ? 'ok  ' : 'FAIL'} ${c.name}: ${c.detail}`);
const json = arg('json');
if (json) {
  writeFileSync(json, `${JSON.stringify({ at: new Date().toISOString(), loadavg: readLoadavg(), ...result }, null, 2)}\n`);
  console.log(`saved ${json}`);
}
process.exit(result.ok ? 0 : 1);

function readLoadavg() {
  try {
    return readFileSync('/proc/loadavg', 'utf8').trim();
  } catch {
    return undefined;
  }
}
