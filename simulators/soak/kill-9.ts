import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { runLoad, type LoadSummary } from '../load.js';
import { seededRandom } from '../seeded-random.js';
import { alarmSchedule } from './alarms.js';
import { subscribeCity, type City } from './city.js';
import { startSoakGateway, type SoakGateway } from './gateway.js';
import { startSoakMosquitto, type SoakBroker } from './mosquitto.js';
import { soakDevices, writeSoakSite, SOAK_PREFIX, type SoakSite } from './site.js';
import { verifyKill9, type Verification } from './verify.js';

/*
 * kill -9 of the gateway under mixed load (issue 8, fault injection), shared by
 * tests/integration/faults/kill-9-mixed.test.ts (3 iterations) and scripts/soak/kill-9.mjs
 * (20 by default). Each iteration: `gridedge start` on the same data directory, QoS 1
 * telemetry from every device with alarms at random moments (alarms.ts), kill -9 at a random
 * moment after the first PUBACK, while messages are in flight. The ledger keeps every message
 * whose PUBACK a device received. After the last kill the gateway starts once more, catches up
 * (rules, outbox) and stops cleanly; verify.ts then checks the store, the incidents and what
 * the city broker received.
 */

export interface Kill9Options {
  readonly iterations: number;
  /** An empty directory for the site, its data and (without `upstreamUrl`) Mosquitto's config. */
  readonly workDir: string;
  /** The city broker; default: a Mosquitto started for the run. */
  readonly upstreamUrl?: string;
  /** Default 30 (10 of each MQTT model). */
  readonly devices?: number;
  /** Messages per second over all devices; default 300. */
  readonly ratePerSecond?: number;
  /** Load per iteration; the kill lands within it. Default 3000 ms. */
  readonly loadMs?: number;
  /** Share of messages that are alarms; default 0.01. */
  readonly alarmShare?: number;
  readonly seed?: number;
  /** Called after each iteration (the script prints its table row). */
  readonly onIteration?: (row: IterationRow) => void;
}

export interface IterationRow {
  readonly iteration: number;
  /** Spawn to listening, ms (iteration 1: the first start; later: a restart after kill -9). */
  readonly startMs: number;
  /** From the first PUBACK of the iteration to the kill. */
  readonly killAfterMs: number;
  readonly sent: number;
  readonly acked: number;
  readonly unacked: number;
  readonly alarmsSent: number;
  readonly alarmsAcked: number;
  /** How the gateway ended: `SIGKILL` expected (anything else: it died by itself). */
  readonly exit: string;
}

export interface Kill9Report {
  readonly seed: number;
  readonly rows: readonly IterationRow[];
  /** The start after the last kill, ms. */
  readonly finalStartMs: number;
  /** From that start until rules and uplink had caught up, ms. */
  readonly catchUpMs: number;
  /** How the clean stop (SIGTERM) at the end went: `code 0` expected. */
  readonly finalExit: string;
  /** SIGTERM to exit, ms. */
  readonly stopMs: number;
  readonly acked: number;
  readonly alarmsAcked: number;
  readonly verification: Verification;
}

/** The repository root (source or dist/): the directory holding bin/gridedge.js. */
function findBin(): string {
  for (let dir = dirname(fileURLToPath(import.meta.url)); ; dir = dirname(dir)) {
    const bin = join(dir, 'bin/gridedge.js');
    if (existsSync(bin)) return bin;
    if (dirname(dir) === dir) throw new Error('bin/gridedge.js not found above simulators/soak');
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Rules have evaluated every stored reading and the uplink's outbox is empty (files read-only, beside the running gateway). */
function caughtUp(site: SoakSite): { ok: boolean; versions: Map<string, number> } {
  const db = new Database(site.dbPath, { readonly: true, fileMustExist: true });
  let rulesDone: boolean;
  try {
    const last = db.prepare<[], number>('SELECT COALESCE(MAX(seq), 0) FROM readings').pluck().get() ?? 0;
    const cursor = db.prepare<[], number>("SELECT cursor FROM consumers WHERE name = 'rules'").pluck().get() ?? -1;
    rulesDone = cursor >= last;
  } finally {
    db.close();
  }
  const inc = new Database(site.incidentsPath, { readonly: true, fileMustExist: true });
  try {
    const outbox = inc.prepare<[], number>('SELECT COUNT(*) FROM outbox').pluck().get() ?? 0;
    const versions = new Map(inc.prepare<[], { id: string; version: number }>('SELECT id, version FROM incidents').all().map((r) => [r.id, r.version]));
    return { ok: rulesDone && outbox === 0, versions };
  } finally {
    inc.close();
  }
}

async function waitFor(what: string, cond: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(100);
  }
}

export async function runKill9(options: Kill9Options): Promise<Kill9Report> {
  const seed = options.seed ?? Math.floor(Math.random() * 2 ** 31);
  const random = seededRandom(seed);
  const loadMs = options.loadMs ?? 3_000;
  const rate = options.ratePerSecond ?? 300;
  const share = options.alarmShare ?? 0.01;
  const bin = findBin();
  const devices = soakDevices(options.devices ?? 30);

  let broker: SoakBroker | undefined;
  let city: City | undefined;
  let gw: SoakGateway | undefined;
  try {
    broker = options.upstreamUrl ? undefined : await startSoakMosquitto(options.workDir);
    const upstreamUrl = options.upstreamUrl ?? (broker as SoakBroker).url;
    const site = await writeSoakSite({ dir: join(options.workDir, 'site'), bin, devices, upstreamUrl });
    city = await subscribeCity(upstreamUrl, SOAK_PREFIX);

    const acked = new Set<string>();
    const ackedAlarms = new Map<string, string>();
    const rows: IterationRow[] = [];
    for (let iteration = 1; iteration <= options.iterations; iteration++) {
      gw = await startSoakGateway(bin, site.configPath, site.dir);
      const schedule = alarmSchedule(random, share);
      let firstAck: () => void = () => {};
      const underLoad = new Promise<void>((r) => (firstAck = r));
      const load: Promise<LoadSummary> = runLoad({
        url: gw.url,
        devices,
        ratePerSecond: rate,
        durationMs: loadMs,
        qos: 1,
        drainMs: 1_000,
        sample: schedule.sample,
        onAck: () => firstAck(),
      });
      // Until the first PUBACK the devices are still connecting; from then on messages are in
      // flight. The kill lands at least a second before the load would end, so a slow first
      // PUBACK on a loaded machine still leaves it under load.
      const killAfterMs = 100 + Math.floor(random() * Math.max(1, loadMs - 1_100));
      await Promise.race([underLoad, load]);
      await sleep(killAfterMs);
      const diedEarly = gw.child.exited();
      await gw.child.kill9();
      const exit = diedEarly ? `exited by itself: ${gw.child.exitStatus()}` : gw.child.exitStatus();
      const summary = await load;
      let alarmsSent = 0;
      let alarmsAcked = 0;
      for (const e of summary.ledger.entries()) {
        const event = schedule.alarmOf(e.deviceId, e.seq);
        if (event !== undefined) alarmsSent++;
        if (!e.acked) continue;
        acked.add(`${e.deviceId}@${e.ts}`);
        if (event !== undefined) {
          alarmsAcked++;
          ackedAlarms.set(`${e.deviceId}@${e.ts}`, event);
        }
      }
      const row: IterationRow = { iteration, startMs: gw.startMs, killAfterMs, sent: summary.sent, acked: summary.acked, unacked: summary.unacked, alarmsSent, alarmsAcked, exit };
      rows.push(row);
      options.onIteration?.(row);
    }

    // Once more on the same data: catch up, then a clean stop, so that the files are final.
    gw = await startSoakGateway(bin, site.configPath, site.dir);
    const t0 = Date.now();
    const c = city;
    await waitFor(
      'the restarted gateway to evaluate every reading and deliver every incident change upstream',
      () => {
        const state = caughtUp(site);
        if (!state.ok) return false;
        const got = new Map<string, number>();
        for (const m of c.messages()) got.set(m.id, Math.max(got.get(m.id) ?? 0, m.version));
        return [...state.versions].every(([id, v]) => (got.get(id) ?? 0) >= v);
      },
      60_000,
    );
    const catchUpMs = Date.now() - t0;
    const finalStartMs = gw.startMs;
    const t1 = Date.now();
    await gw.child.stop(15_000);
    const stopMs = Date.now() - t1;
    const finalExit = gw.child.exitStatus();
    const finalOutput = gw.child.output();
    gw = undefined;
    const verification = verifyKill9(site, { acked, ackedAlarms }, city.messages());
    if (finalExit !== 'code 0') verification.problems.push(`the clean stop (SIGTERM) ended with ${finalExit} after ${stopMs} ms; the gateway's last output:\n${finalOutput.slice(-3_000)}`);
    if (city.malformed().length > 0) verification.problems.push(`malformed upstream messages: ${city.malformed().slice(0, 3).join('; ')}`);
    return { seed, rows, finalStartMs, catchUpMs, finalExit, stopMs, acked: acked.size, alarmsAcked: ackedAlarms.size, verification };
  } finally {
    await gw?.child.stop(5_000);
    await city?.close();
    await broker?.stop();
  }
}
