// Shared helpers of the benchmarks under scripts/bench/ (not tests; nothing here runs under
// `npm test`). Everything listens on 127.0.0.1; every child started here is remembered and
// stopped by its PID. The helpers follow scripts/bench-ingest.mjs and tests/helpers/*.ts.
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import process from 'node:process';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const RESULTS_DIR = join(ROOT, 'scripts/bench/results');
export const DB = 'gridedge';
export const GRID = '110101013001002';

/** Every child started with `start`, so that an error still stops them (by PID). */
export const children = new Set();

export function killChildren() {
  for (const c of children) {
    try {
      process.kill(c.pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
}

export function flag(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const v = Number(process.argv[i + 1]);
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} needs a positive number`);
  return v;
}

export function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

/** Spawns a child with its output kept; `line` resolves when the output matches `ready` (at once without one). */
export function start(cmd, args, { ready, cwd, env, timeoutMs = 60_000 } = {}) {
  const child = spawn(cmd, args, { cwd, env: env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let out = '';
  const exited = new Promise((res) =>
    child.once('close', (code, signal) => {
      children.delete(child);
      res({ code, signal });
    }),
  );
  const line = new Promise((res, rej) => {
    const timer = ready ? setTimeout(() => rej(new Error(`${cmd} did not print ${ready} within ${timeoutMs} ms:\n${out.slice(-4000)}`)), timeoutMs) : undefined;
    const onData = (d) => {
      out += d.toString('utf8');
      if (out.length > 1e6) out = out.slice(-1e5);
      const m = ready && out.match(ready);
      if (m) {
        clearTimeout(timer);
        res(m);
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    if (!ready) res(null);
    child.once('close', () => {
      clearTimeout(timer);
      if (ready) rej(new Error(`${cmd} exited before printing ${ready}:\n${out.slice(-4000)}`));
    });
  });
  line.catch(() => {});
  return {
    pid: child.pid,
    line,
    exited,
    output: () => out,
    async stop(graceMs = 15_000) {
      if (child.exitCode !== null || child.signalCode !== null) return exited;
      process.kill(child.pid, 'SIGTERM');
      const t = setTimeout(() => {
        if (child.exitCode === null && child.signalCode === null) process.kill(child.pid, 'SIGKILL');
      }, graceMs);
      const s = await exited;
      clearTimeout(t);
      return s;
    },
  };
}

/** Resident set of a PID, bytes (Linux /proc). */
export function rssOf(pid) {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** utime + stime of a PID, seconds. */
export function cpuOf(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

export function sampleRss(pid) {
  let max = 0;
  const timer = setInterval(() => {
    max = Math.max(max, rssOf(pid));
  }, 200);
  return () => {
    clearInterval(timer);
    return Math.max(max, rssOf(pid));
  };
}

function version(cmd, args) {
  try {
    return execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] }).toString().trim().split('\n')[0];
  } catch (err) {
    // mosquitto -h exits 3 but prints its version
    const text = `${err.stdout ?? ''}${err.stderr ?? ''}`.trim().split('\n')[0];
    return text || 'unknown';
  }
}

export function machine() {
  return {
    nproc: execFileSync('nproc').toString().trim(),
    cpu: cpus()[0]?.model ?? 'unknown',
    memory: `${(totalmem() / 1024 ** 3).toFixed(1)} GiB`,
    node: process.version,
    influxd: version('influxd', ['version']),
    mosquitto: version('mosquitto', ['-h']),
    kernel: version('uname', ['-r']),
    load: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' '),
  };
}

// ---- influxd, configured as tests/helpers/influxd.ts does ---------------------------------------
export async function startInfluxd(work) {
  const dir = join(work, 'influxd');
  for (const sub of ['meta', 'data', 'wal']) mkdirSync(join(dir, sub), { recursive: true });
  const port = await freePort();
  let rpc = await freePort();
  while (rpc === port) rpc = await freePort();
  const config = join(dir, 'influxdb.conf');
  writeFileSync(
    config,
    [
      'reporting-disabled = true',
      `bind-address = "127.0.0.1:${rpc}"`,
      '[meta]',
      `  dir = "${join(dir, 'meta')}"`,
      '  logging-enabled = false',
      '[data]',
      `  dir = "${join(dir, 'data')}"`,
      `  wal-dir = "${join(dir, 'wal')}"`,
      '  query-log-enabled = false',
      '[monitor]',
      '  store-enabled = false',
      '[subscriber]',
      '  enabled = false',
      '[http]',
      '  enabled = true',
      `  bind-address = "127.0.0.1:${port}"`,
      '  auth-enabled = false',
      '  log-enabled = false',
      '  pprof-enabled = false',
      '  unix-socket-enabled = false',
      '[ifql]',
      '  enabled = false',
      '[logging]',
      '  suppress-logo = true',
      '  level = "warn"',
      '[[graphite]]',
      '  enabled = false',
      '[[collectd]]',
      '  enabled = false',
      '[[opentsdb]]',
      '  enabled = false',
      '[[udp]]',
      '  enabled = false',
      '[continuous_queries]',
      '  enabled = false',
      '',
    ].join('\n'),
  );
  const url = `http://127.0.0.1:${port}`;
  const influx = { url, port, proc: undefined };
  influx.start = async () => {
    influx.proc = start('influxd', ['run', '-config', config], { cwd: dir });
    const deadline = Date.now() + 30_000;
    for (;;) {
      try {
        const res = await fetch(`${url}/ping`, { signal: AbortSignal.timeout(1_000) });
        if (res.status === 204) break;
      } catch {
        // not yet
      }
      if (Date.now() > deadline) throw new Error(`influxd did not answer /ping:\n${influx.proc.output()}`);
      await sleep(100);
    }
  };
  influx.stop = () => influx.proc?.stop();
  await influx.start();
  return influx;
}

export async function influxQuery(url, q, db = DB) {
  const res = await fetch(`${url}/query`, { method: 'POST', body: new URLSearchParams({ q, db, epoch: 'ms' }) });
  const json = await res.json();
  const err = json.error ?? json.results?.find((r) => r.error)?.error;
  if (err) throw new Error(`${q}: ${err}`);
  return json.results?.flatMap((r) => r.series ?? []) ?? [];
}

/** Points per device_id in the measurements of `db` (count of battery_low, which every MQTT model's point has). */
export async function influxCountsByDevice(url, db = DB, measurement = 'smoke, pager') {
  const counts = new Map();
  let series;
  try {
    series = await influxQuery(url, `SELECT count(battery_low) FROM ${measurement} GROUP BY device_id`, db);
  } catch (err) {
    if (/database not found/.test(err.message)) return counts;
    throw err;
  }
  for (const s of series) counts.set(s.tags.device_id, (counts.get(s.tags.device_id) ?? 0) + Number(s.values[0][1]));
  return counts;
}

export const sum = (m) => [...m.values()].reduce((a, b) => a + b, 0);

/** Waits until the total in InfluxDB reaches `target` or stops growing for `stableMs`; returns the last counts. */
export async function waitForInflux(url, db, target, { stableMs = 8_000, pollMs = 250, maxMs = 120_000 } = {}) {
  let last = -1;
  let stableSince = Date.now();
  const t0 = Date.now();
  for (;;) {
    const counts = await influxCountsByDevice(url, db);
    const total = sum(counts);
    if (total !== last) stableSince = Date.now();
    last = total;
    if (total >= target || Date.now() - stableSince > stableMs || Date.now() - t0 > maxMs) {
      return { counts, total, at: total >= target ? Date.now() : stableSince };
    }
    await sleep(pollMs);
  }
}

// ---- mosquitto (as tests/helpers/mosquitto.ts, in plain JS) --------------------------------------
export async function startMosquitto(work, name = 'mosquitto') {
  const dir = join(work, name);
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  writeFileSync(
    join(dir, 'mosquitto.conf'),
    [
      'per_listener_settings false',
      `listener ${port} 127.0.0.1`,
      'allow_anonymous true',
      'persistence false',
      'log_dest stderr',
      'log_type error',
      'log_type warning',
      'log_type notice',
      'log_type information',
      // Unbounded queues for the relay subscriber: a slow subscriber is the subscriber's figure.
      'max_queued_messages 0',
      'max_inflight_messages 0',
      ...(process.getuid?.() === 0 ? ['user root'] : []),
      '',
    ].join('\n'),
  );
  const proc = start('mosquitto', ['-c', join(dir, 'mosquitto.conf')], { cwd: dir, ready: /mosquitto version \S+ running/ });
  await proc.line;
  return { proc, port, url: `mqtt://127.0.0.1:${port}` };
}

// ---- results -------------------------------------------------------------------------------------
export function saveResult(name, data) {
  mkdirSync(RESULTS_DIR, { recursive: true });
  writeFileSync(join(RESULTS_DIR, `${name}.json`), `${JSON.stringify({ machine: machine(), ...data, at: new Date().toISOString() }, null, 2)}\n`);
}

export function loadResult(name) {
  const f = join(RESULTS_DIR, `${name}.json`);
  return existsSync(f) ? JSON.parse(readFileSync(f, 'utf8')) : undefined;
}

export const mb = (b) => `${(b / 1024 / 1024).toFixed(0)} MB`;
export const rate = (r) => `${Math.round(r).toLocaleString('en-US')}/s`;
export { sleep };

// ---- a gridedge site for the benches -------------------------------------
/**
 * Writes devices.csv and gridedge.yaml into `dir`. `hash` is one scrypt hash used for every row
 * (all bench devices share one secret, so 10k rows do not cost 10k scrypt runs to write).
 */
export function writeSite(dir, { devices, hash, influxUrl, rules = true, extraYaml = [] }) {
  mkdirSync(dir, { recursive: true });
  const header = 'id,model,grid,building,room,secret,bus,address,rf,heartbeat,resident_name,resident_phone';
  const rows = devices.map((d, i) => `${d.id},${d.model.id},${GRID},7,R${100 + (i % 50)},${hash},,,,,,`);
  writeFileSync(join(dir, 'devices.csv'), `${[header, ...rows].join('\n')}\n`);
  writeFileSync(
    join(dir, 'gridedge.yaml'),
    [
      'gateway: { id: gw-bench, dataDir: ./data }',
      'site:',
      '  district: "110101"',
      '  street: { code: "110101013", name: 东花市街道 }',
      '  communities: [{ code: "001", name: 北里社区 }]',
      `  grids: [{ code: "${GRID}", name: 第2网格 }]`,
      'mqtt:',
      '  listen: { host: 127.0.0.1, port: 0 }',
      '  rateLimit: { perSecond: 100000, burst: 100000 }',
      'devices: ./devices.csv',
      'sinks:',
      '  - { type: embedded }',
      ...(influxUrl ? [`  - { type: influxdb1, url: "${influxUrl}", database: ${DB} }`] : []),
      'http: { host: 127.0.0.1, port: 0 }',
      ...(rules ? [] : ['rules: []']),
      ...extraYaml,
      '',
    ].join('\n'),
  );
  return join(dir, 'gridedge.yaml');
}

export const GATEWAY_READY = /gridedge \S+: MQTT on [^\s,]+:(\d+),/;

/** The bare aedes broker (scripts/bench/bare-aedes.mjs) as a child: `{ proc, url }` once it listens. */
export async function startBareAedes() {
  const proc = start(process.execPath, [join(ROOT, 'scripts/bench/bare-aedes.mjs')], { ready: /bare aedes on 127\.0\.0\.1:(\d+)/ });
  return { proc, url: `mqtt://127.0.0.1:${(await proc.line)[1]}` };
}

export function startGateway(config, { nodeArgs = [], cwd } = {}) {
  return start(process.execPath, [...nodeArgs, join(ROOT, 'bin/gridedge.js'), 'start', '-c', config, '--log-level', 'warn'], {
    cwd: cwd ?? dirname(config),
    ready: GATEWAY_READY,
    timeoutMs: 180_000,
  });
}
