#!/usr/bin/env node
// Ingest benchmark (not a test): QoS 1 readings/s sustained end to end — device publish → group
// commit → PUBACK, and on to a real influxd 1.x — through `gridedge start` as a child process,
// against the same load generator (dist/simulators/load.js) on a bare aedes broker (aedes + net,
// an authorizePublish that just calls back) in the same run. Prints the ratio, the gateway's RSS,
// the loss (PUBACKed vs in InfluxDB) and where the gateway's CPU time goes (--cpu-prof), and
// writes the figures into a section of docs/PERFORMANCE.md.
//
//   npm run bench:ingest                       (= npm run build && node scripts/bench-ingest.mjs)
//   node scripts/bench-ingest.mjs [--seconds 12] [--rounds 2] [--connections 100] [--in-flight 20]
//                                 [--profile-seconds 6] [--no-profile] [--no-diagnostic] [--no-docs] [--keep]
//
// Everything listens on 127.0.0.1 and lives in a temp dir; every process started here is stopped
// by its PID. Needs `influxd` (Debian's influxdb) and `npm run build`.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, totalmem, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import process from 'node:process';
import { setTimeout as sleep } from 'node:timers/promises';
import { DB, ROOT, children, cpuOf, flag, influxCountsByDevice, rssOf, sampleRss, startBareAedes, startGateway, startInfluxd, writeSite } from './bench/lib.mjs';


// ---- options -----------------------------------------------------------------------------------
const SECONDS = flag('seconds', 12);
/** Bare and gateway runs alternate this many times; the best of each is compared (the box may be shared). */
const ROUNDS = flag('rounds', 2);
const CONNECTIONS = flag('connections', 100);
const IN_FLIGHT = flag('in-flight', 20);
const PROFILE_SECONDS = process.argv.includes('--no-profile') ? 0 : flag('profile-seconds', 6);
/** One more gateway run with `rules: []`, to tell the ingest path from the rule engine. */
const DIAGNOSTIC = !process.argv.includes('--no-diagnostic');
const WRITE_DOCS = !process.argv.includes('--no-docs');
/** Keep the temp dir (sites, stores, the .cpuprofile) and print where it is. */
const KEEP = process.argv.includes('--keep');
// Open loop above what either broker can take: the in-flight cap per connection is what paces
// the generator, so the figure is the sustained PUBACK rate, not the offered rate.
const OFFERED_RATE = 200_000;
const WARMUP_MS = 2_000;

for (const f of ['dist/simulators/load.js', 'dist/gateway/registry/secrets.js', 'dist/gateway/cli/main.js']) {
  if (!existsSync(join(ROOT, f))) throw new Error(`${f} is missing: run \`npm run build\` (npm run bench:ingest does)`);
}
const { runLoad } = await import(join(ROOT, 'dist/simulators/load.js'));
const { hashSecret } = await import(join(ROOT, 'dist/gateway/registry/secrets.js'));
const { getModel } = await import(join(ROOT, 'dist/devices/catalogue.js'));

const work = mkdtempSync(join(tmpdir(), 'gridedge-bench-ingest-'));
// ---- devices -----------------------------------------------------------------------------------
const MODEL_IDS = ['smoke-json', 'smoke-ctw', 'pager-json'];
// One secret for every device (one scrypt hash in devices.csv; the gateway still verifies each CONNECT).
const SECRET = 'bench-secret-shared';
const secretHash = hashSecret(SECRET);
const devices = Array.from({ length: CONNECTIONS }, (_, i) => {
  const id = `BENCH-${String(i).padStart(4, '0')}`;
  return { id, secret: SECRET, model: getModel(MODEL_IDS[i % MODEL_IDS.length]) };
});

/** One load run; the sustained rate counts PUBACKs after the warm-up until the end of sending. */
async function load(url, seconds, onStart = () => {}) {
  let t0 = 0;
  let inWindow = 0;
  const cpu0 = process.cpuUsage();
  const summary = await runLoad({
    url,
    devices,
    ratePerSecond: OFFERED_RATE,
    durationMs: seconds * 1000,
    qos: 1,
    maxInFlight: IN_FLIGHT,
    drainMs: 30_000,
    // The first progress call comes when sending starts (after every device connected).
    onProgress: () => {
      if (t0 !== 0) return;
      t0 = performance.now();
      onStart();
    },
    progressMs: 50,
    onAck: () => {
      const at = performance.now() - t0;
      if (t0 > 0 && at >= WARMUP_MS && at < seconds * 1000) inWindow++;
    },
  });
  const sustained = inWindow / ((seconds * 1000 - WARMUP_MS) / 1000);
  const used = process.cpuUsage(cpu0);
  return { summary, sustained, t0, generatorCpu: (used.user + used.system) / 1e6 };
}

// ---- the runs ----------------------------------------------------------------------------------
async function bareAedes() {
  const { proc, url } = await startBareAedes();
  const rss = sampleRss(proc.pid);
  const cpu0 = cpuOf(proc.pid);
  const { summary, sustained, generatorCpu } = await load(url, SECONDS);
  const cpu = cpuOf(proc.pid) - cpu0;
  const maxRss = rss();
  await proc.stop();
  return { summary, sustained, maxRss, cpu, generatorCpu };
}

async function gatewayRun(influxUrl, name, seconds, nodeArgs = [], siteOptions = {}) {
  const dir = join(work, name);
  // The diagnostic run without the rule engine (`rules: false`): ingest and sinks only.
  const proc = startGateway(writeSite(dir, { devices, hash: await secretHash, influxUrl, ...siteOptions }), { nodeArgs });
  const port = Number((await proc.line)[1]);
  const idleRss = rssOf(proc.pid);
  const rss = sampleRss(proc.pid);
  const cpu0 = cpuOf(proc.pid);
  const before = await influxCountsByDevice(influxUrl, DB, 'smoke, pager');
  let connectedRss = 0;
  const { summary, sustained, t0, generatorCpu } = await load(`mqtt://127.0.0.1:${port}`, seconds, () => {
    connectedRss = rssOf(proc.pid);
  });
  const lastAckAt = performance.now();

  // Until InfluxDB holds every PUBACKed reading (or it stops growing for 20 s).
  const ackedBy = new Map();
  for (const e of summary.ledger.acked()) ackedBy.set(e.deviceId, (ackedBy.get(e.deviceId) ?? 0) + 1);
  let counts = new Map();
  let total = -1;
  let stableSince = performance.now();
  for (;;) {
    counts = await influxCountsByDevice(influxUrl, DB, 'smoke, pager');
    let sum = 0;
    for (const [id, n] of counts) sum += n - (before.get(id) ?? 0);
    if (sum !== total) stableSince = performance.now();
    total = sum;
    if (total >= summary.acked || performance.now() - stableSince > 20_000) break;
    await sleep(100);
  }
  const drainedAt = performance.now();
  let lost = 0;
  for (const [id, n] of ackedBy) lost += Math.max(0, n - ((counts.get(id) ?? 0) - (before.get(id) ?? 0)));
  const cpu = cpuOf(proc.pid) - cpu0;
  const maxRss = rss();
  const exit = await proc.stop(30_000);
  return {
    summary,
    sustained,
    idleRss,
    connectedRss,
    maxRss,
    cpu,
    inInflux: total,
    lost,
    influxLagMs: drainedAt - lastAckAt,
    generatorCpu,
    // From the first message sent to the last PUBACKed reading in InfluxDB.
    endToEnd: summary.acked / ((drainedAt - t0) / 1000),
    exit,
    dir,
  };
}

/**
 * Inclusive time of the gateway's stages (a sample counts for a stage when the stage's function
 * is on its stack, below `under` when given).
 */
const STAGES = [
  { name: 'MQTT in: parse + handlers (mqtt-packet, aedes, everything below)', fn: 'parse', url: 'mqtt-packet/parser.js' },
  { name: '  authorizePublish hook (broker → pipeline → group commit)', fn: 'authorizePublish', url: 'gateway/broker/device-broker.js' },
  { name: '    decode (JSON.parse + wire schema)', fn: 'decode', url: 'devices/models/' },
  { name: '    ReadingSchema re-check in the pipeline (zod)', fn: 'safeParse', url: 'zod/', under: { fn: 'commit', url: 'ingest/pipeline/pipeline.js' } },
  { name: 'group commit transaction (readings, device state, outbox; COMMIT + fsync)', fn: 'commit', url: 'ingest/store/open-store.js' },
  { name: '  readings.insert (JSON.stringify + INSERT)', fn: 'insert', url: 'ingest/store/readings.js' },
  { name: 'commit listeners (store.onCommit)', fn: 'afterCommit', url: 'ingest/store/open-store.js' },
  { name: '  rule engine: onReading', fn: 'onReading', url: 'rules/engine/engine.js' },
  { name: '    rule engine: saving its state (store.transaction: COMMIT + fsync)', fn: 'flush', url: 'rules/engine/engine.js' },
  // The gateway's own listener (an arrow function in app.ts): JSON.stringify + publishLocal per reading.
  { name: '  local republish on gridedge/readings/… (JSON.stringify + aedes.publish)', fn: '', url: 'gateway/app.js', under: { fn: 'afterCommit', url: 'ingest/store/open-store.js' } },
  { name: 'influxdb1 sink: read outbox (JSON.parse), line protocol, HTTP, ack', fn: 'deliverBatch', url: 'ingest/sinks/runner.js' },
  { name: '  outbox read (readAfter)', fn: 'readAfter', url: 'ingest/store/open-store.js' },
  { name: 'garbage collector', fn: '(garbage collector)', url: '' },
  { name: 'idle (waiting for the network)', fn: '(idle)', url: '' },
];

/** Self time by function and by module, and inclusive time by stage, from a V8 .cpuprofile. */
function analyseProfile(file) {
  const prof = JSON.parse(readFileSync(file, 'utf8'));
  const total = prof.endTime - prof.startTime; // µs
  const samples = prof.samples.length || 1;
  const byNode = new Map(prof.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const selfCount = new Map();
  for (const id of prof.samples) selfCount.set(id, (selfCount.get(id) ?? 0) + 1);
  const byFn = new Map();
  const byModule = new Map();
  const stageCount = STAGES.map(() => 0);
  const matches = (cf, m) => cf.functionName === m.fn && cf.url.includes(m.url);
  for (const [id, n] of selfCount) {
    const cf = byNode.get(id).callFrame;
    const url = cf.url.replace(/^file:\/\//, '');
    const mod = moduleOf(url, cf.functionName);
    const fn = `${cf.functionName || '(anonymous)'} ${url ? `${shortUrl(url)}:${cf.lineNumber + 1}` : ''}`.trim();
    byFn.set(fn, (byFn.get(fn) ?? 0) + n);
    byModule.set(mod, (byModule.get(mod) ?? 0) + n);
    const stack = [];
    for (let cur = id; cur !== undefined; cur = parent.get(cur)) stack.push(byNode.get(cur).callFrame);
    STAGES.forEach((st, i) => {
      const at = stack.findIndex((f) => matches(f, st));
      if (at < 0) return;
      if (st.under && !stack.slice(at + 1).some((f) => matches(f, st.under))) return;
      stageCount[i] += n;
    });
  }
  const top = (m, k) =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, k)
      .map(([name, n]) => ({ name, pct: (100 * n) / samples }));
  return {
    seconds: total / 1e6,
    stages: STAGES.map((st, i) => ({ name: st.name, pct: (100 * stageCount[i]) / samples })),
    modules: top(byModule, 12),
    functions: top(byFn, 12),
  };
}

function shortUrl(url) {
  const nm = url.lastIndexOf('node_modules/');
  if (nm >= 0) return url.slice(nm + 'node_modules/'.length);
  return url.startsWith(ROOT) ? url.slice(ROOT.length + 1) : url;
}

function moduleOf(url, fn) {
  if (!url) {
    if (fn === '(garbage collector)' || fn === '(idle)' || fn === '(program)') return fn;
    // Native frames: better-sqlite3's statement calls show as `run`, `all`, `get` without a URL.
    return `(native) ${fn}`;
  }
  if (url.startsWith('node:')) return `node:${url.slice(5).split('/')[0]}`;
  const nm = url.lastIndexOf('node_modules/');
  if (nm >= 0) {
    const rest = url.slice(nm + 'node_modules/'.length).split('/');
    return rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0];
  }
  if (url.includes('/dist/')) return `gridedge ${url.slice(url.indexOf('/dist/') + 6).split('/').slice(0, 2).join('/')}`;
  return url;
}

// ---- main --------------------------------------------------------------------------------------
const mb = (b) => `${(b / 1024 / 1024).toFixed(0)} MB`;
const us = (cpu, n) => (n > 0 ? `${((cpu / n) * 1e6).toFixed(1)} µs` : 'n/a');
const rate = (r) => `${Math.round(r).toLocaleString('en-US')}/s`;
let influx;
try {
  const machine = {
    nproc: execFileSync('nproc').toString().trim(),
    cpu: cpus()[0]?.model ?? 'unknown',
    memory: `${(totalmem() / 1024 ** 3).toFixed(1)} GiB`,
    node: process.version,
    influxd: execFileSync('influxd', ['version']).toString().trim(),
  };
  console.log(`machine: ${machine.nproc} CPUs (${machine.cpu}), ${machine.memory}, node ${machine.node}, ${machine.influxd}`);
  console.log(`load: ${CONNECTIONS} connections, QoS 1, ≤ ${IN_FLIGHT} in flight each, ${SECONDS} s a run (first ${WARMUP_MS / 1000} s not counted)\n`);
  influx = await startInfluxd(work);

  const bares = [];
  const gws = [];
  for (let round = 1; round <= ROUNDS; round++) {
    console.log(`round ${round}/${ROUNDS}: bare aedes …`);
    const b = await bareAedes();
    bares.push(b);
    console.log(
      `    ${rate(b.sustained)} PUBACKs; RSS ${mb(b.maxRss)}; broker CPU ${us(b.cpu, b.summary.acked)} a message, load generator ${us(b.generatorCpu, b.summary.acked)}`,
    );
    console.log(`round ${round}/${ROUNDS}: gridedge start (embedded store + influxdb1 sink) …`);
    const g = await gatewayRun(influx.url, `gateway-${round}`, SECONDS);
    gws.push(g);
    console.log(
      `    ${rate(g.sustained)} PUBACKs (committed); ${rate(g.endToEnd)} end to end into InfluxDB (${(g.influxLagMs / 1000).toFixed(1)} s behind the last PUBACK); ` +
        `RSS ${mb(g.idleRss)} idle, ${mb(g.connectedRss)} with the devices connected, ${mb(g.maxRss)} max; gateway CPU ${us(g.cpu, g.summary.acked)} a message, load generator ${us(g.generatorCpu, g.summary.acked)}; ` +
        `loss ${g.lost} of ${g.summary.acked} (unacked ${g.summary.unacked})`,
    );
  }
  const best = (runs) => runs.reduce((a, b) => (b.sustained > a.sustained ? b : a));
  const bare = best(bares);
  const gw = {
    ...best(gws),
    maxRss: Math.max(...gws.map((g) => g.maxRss)),
    lost: gws.reduce((n, g) => n + g.lost, 0),
    unackedTotal: gws.reduce((n, g) => n + g.summary.unacked, 0),
    ackedTotal: gws.reduce((n, g) => n + g.summary.acked, 0),
  };
  const ranges = { bare: bares.map((b) => b.sustained), gw: gws.map((g) => g.sustained) };

  let noRules;
  if (DIAGNOSTIC) {
    console.log('diagnostic: gridedge start with `rules: []` (ingest and sinks only; not counted above) …');
    noRules = await gatewayRun(influx.url, 'gateway-no-rules', SECONDS, [], { rules: false });
    console.log(
      `    ${rate(noRules.sustained)} PUBACKs (${((noRules.sustained / bare.sustained) * 100).toFixed(1)} % of bare aedes); RSS ${mb(noRules.maxRss)} max; ` +
        `gateway CPU ${us(noRules.cpu, noRules.summary.acked)} a message; loss ${noRules.lost} of ${noRules.summary.acked}`,
    );
  }

  let profile;
  if (PROFILE_SECONDS > 0) {
    console.log(`profile: gridedge start under --cpu-prof (${PROFILE_SECONDS} s, not counted above) …`);
    const profDir = join(work, 'prof');
    mkdirSync(profDir, { recursive: true });
    const p = await gatewayRun(influx.url, 'gateway-prof', PROFILE_SECONDS, ['--cpu-prof', '--cpu-prof-dir', profDir]);
    const file = readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'));
    if (file) {
      profile = { ...analyseProfile(join(profDir, file)), sustained: p.sustained };
      console.log(`    ${rate(p.sustained)} under the profiler; inclusive time by stage:`);
      for (const m of profile.stages) console.log(`      ${m.pct.toFixed(1).padStart(5)} %  ${m.name}`);
      console.log('    self time by module:');
      for (const m of profile.modules) console.log(`      ${m.pct.toFixed(1).padStart(5)} %  ${m.name}`);
      console.log('    top functions:');
      for (const f of profile.functions) console.log(`      ${f.pct.toFixed(1).padStart(5)} %  ${f.name}`);
    } else {
      console.log('    no profile was written');
    }
  }

  const ratio = gw.sustained / bare.sustained;
  const goals = {
    ratio: ratio >= 0.5,
    loss: gw.lost === 0 && gw.unackedTotal === 0,
    rss: gw.maxRss < 250 * 1024 * 1024,
  };
  console.log(
    `\nratio gateway / bare aedes: ${(ratio * 100).toFixed(1)} % (goal ≥ 50 %: ${goals.ratio ? 'met' : 'MISSED'}); ` +
      `loss ${gw.lost} (goal 0: ${goals.loss ? 'met' : 'MISSED'}); RSS ${mb(gw.maxRss)} (goal < 250 MB: ${goals.rss ? 'met' : 'MISSED'})`,
  );

  if (WRITE_DOCS) {
    writeDocs({ machine, bare, gw, profile, ratio, goals, ranges, noRules });
    console.log('written to docs/PERFORMANCE.md');
  }
} finally {
  await influx?.proc.stop();
  for (const c of children) process.kill(c.pid, 'SIGKILL');
  if (KEEP) console.log(`kept ${work}`);
  else rmSync(work, { recursive: true, force: true });
}

function writeDocs({ machine, bare, gw, profile, ratio, goals, ranges, noRules }) {
  const file = join(ROOT, 'docs/PERFORMANCE.md');
  const START = '<!-- bench:ingest:start (written by scripts/bench-ingest.mjs; edit outside these markers) -->';
  const END = '<!-- bench:ingest:end -->';
  const list = (xs) => xs.map((x) => Math.round(x).toLocaleString('en-US')).join(', ');
  const lines = [
    START,
    '### Figures of the last run',
    '',
    `Measured ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC with ` +
      (process.env.npm_lifecycle_event === 'bench:ingest'
        ? `\`npm run bench:ingest${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}\` (= \`npm run build && node scripts/bench-ingest.mjs\`).`
        : `\`node scripts/bench-ingest.mjs${process.argv.length > 2 ? ` ${process.argv.slice(2).join(' ')}` : ''}\` after \`npm run build\` (what \`npm run bench:ingest\` runs).`),
    '',
    `Machine: ${machine.nproc} CPUs (\`nproc\`; ${machine.cpu}), ${machine.memory} memory, Node ${machine.node}, ${machine.influxd}. ` +
      'The load generator, the broker under test and influxd share these cores.',
    '',
    `Load: ${CONNECTIONS} device connections (smoke-json, smoke-ctw, pager-json in turn), QoS 1, offered open loop at ${OFFERED_RATE.toLocaleString('en-US')} msg/s and paced by ` +
      `at most ${IN_FLIGHT} unacknowledged messages per connection; ${ROUNDS} rounds of bare aedes then gridedge, ${SECONDS} s each, counted from ${WARMUP_MS / 1000} s on; the best round of each is compared.`,
    '',
    '| | bare aedes | gridedge (`gridedge start`, embedded store + influxdb1 sink) |',
    '|---|---|---|',
    `| QoS 1 PUBACKs/s, sustained (best round) | ${rate(bare.sustained)} | ${rate(gw.sustained)}, each committed to SQLite (\`synchronous=FULL\`) before its PUBACK |`,
    `| all rounds | ${list(ranges.bare)} | ${list(ranges.gw)} |`,
    `| ratio | 100 % | **${(ratio * 100).toFixed(1)} %** (goal ≥ 50 %: ${goals.ratio ? 'met' : `missed by ${((0.5 - ratio) * 100).toFixed(1)} points`}) |`,
    `| end to end into InfluxDB | — | ${rate(gw.endToEnd)} from the first publish to the last point in InfluxDB (${(gw.influxLagMs / 1000).toFixed(1)} s after the last PUBACK) |`,
    `| PUBACK latency p50 / p99 | ${bare.summary.latencyMs?.p50} / ${bare.summary.latencyMs?.p99} ms | ${gw.summary.latencyMs?.p50} / ${gw.summary.latencyMs?.p99} ms |`,
    `| CPU a message: broker process / load generator | ${us(bare.cpu, bare.summary.acked)} / ${us(bare.generatorCpu, bare.summary.acked)} | ${us(gw.cpu, gw.summary.acked)} / ${us(gw.generatorCpu, gw.summary.acked)} |`,
    `| RSS, max while loaded | ${mb(bare.maxRss)} | **${mb(gw.maxRss)}** (${mb(gw.idleRss)} before the devices connect, ${mb(gw.connectedRss)} once they are; goal < 250 MB: ${goals.rss ? 'met' : `missed by ${mb(gw.maxRss - 250 * 1024 * 1024)}`}) |`,
    ...(noRules
      ? [
          `| diagnostic: the same with \`rules: []\` (one run) | — | ${rate(noRules.sustained)} = ${((noRules.sustained / bare.sustained) * 100).toFixed(1)} % of bare aedes; ` +
            `${us(noRules.cpu, noRules.summary.acked)} CPU a message; RSS ${mb(noRules.maxRss)} max; loss ${noRules.lost} of ${noRules.summary.acked.toLocaleString('en-US')} |`,
        ]
      : []),
    `| loss: PUBACKed but not in InfluxDB | — | **${gw.lost}** of ${gw.ackedTotal.toLocaleString('en-US')} over all rounds (without a PUBACK at the end: ${gw.unackedTotal}; goal 0: ${goals.loss ? 'met' : 'missed'}) |`,
    '',
  ];
  if (profile) {
    lines.push(
      `Where the gateway's time goes: \`node --cpu-prof\` on a separate ${PROFILE_SECONDS} s run (${rate(profile.sustained)} under the profiler), share of all samples.`,
      '',
      '| stage (inclusive) | % |',
      '|---|---|',
      ...profile.stages.map((m) => `| ${m.name.replace(/^( +)/, (sp) => '&nbsp;'.repeat(sp.length * 2))} | ${m.pct.toFixed(1)} |`),
      '',
      '| module (self) | % | | function (self) | % |',
      '|---|---|---|---|---|',
      ...profile.modules.map((m, i) => {
        const f = profile.functions[i];
        return `| ${m.name.replace(/\|/g, '\\|')} | ${m.pct.toFixed(1)} | | ${f ? `\`${f.name.replace(/\|/g, '\\|')}\`` : ''} | ${f ? f.pct.toFixed(1) : ''} |`;
      }),
      '',
    );
  }
  lines.push(END);
  const section = lines.join('\n');
  let text = existsSync(file) ? readFileSync(file, 'utf8') : '# gridedge — performance\n\n';
  const a = text.indexOf(START);
  const b = text.indexOf(END);
  text = a >= 0 && b > a ? `${text.slice(0, a)}${section}${text.slice(b + END.length)}` : `${text.trimEnd()}\n\n${section}\n`;
  writeFileSync(file, text);
}
