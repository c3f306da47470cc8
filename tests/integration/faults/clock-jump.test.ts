import { existsSync, readdirSync } from 'node:fs';
import { writeFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { MqttClient } from 'mqtt';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Incident } from '../../../rules/incidents/index.js';
import {
  ROOT,
  connectAsDevice,
  makeDevices,
  sleep,
  spawnGateway,
  storedReadings,
  waitUntil,
  writeGatewaySite,
  type GatewaySite,
  type TestDevice,
} from '../../helpers/gateway.js';
import { spawnProcess } from '../../helpers/process.js';
import { makeTempDir } from '../../helpers/tmp.js';

// Issue 8, "the clock jumping forward and back (NTP corrections) without false escalations or
// offline storms" (docs/SPEC-NOTES.md "Clock steps"). `gridedge start` runs under libfaketime
// with its wall clock read from a file (FAKETIME_TIMESTAMP_FILE, no cache) and its monotonic
// clock left alone (FAKETIME_DONT_FAKE_MONOTONIC=1), as in a real NTP step; the test rewrites
// the file to step the process's wall clock by +1 h, then back by 1 h, while devices send
// heartbeats, an SOS waits for acknowledgement, one device stops reporting and one holds a
// `for` condition. Every "not before" below is measured on this test's monotonic clock
// (performance.now), which no step touches.

const HOUR = 3_600_000;
const ESCALATE_MS = 20_000; // critical: the SOS escalates after 20 s of real time
const OFFLINE_MS = 12_000; // silentFor: a device silent for 12 s is offline
const HELD_MS = 25_000; // `for`: battery low held for 25 s
const BEAT_MS = 1_000;

const SMOKE = makeDevices('CLK-SMK', 3, { model: 'smoke-json' }); // A keeps reporting, B goes silent, C reports battery low
const [A, B, C] = SMOKE as [TestDevice, TestDevice, TestDevice];
const PAGER = makeDevices('CLK-PGR', 1, { model: 'pager-json' })[0] as TestDevice;

const RULES = {
  rules: [
    { id: 'sos', type: 'sos', severity: 'critical', scope: 'device', match: { kind: 'pager' }, when: { event: 'sos' }, clear: { event: 'cancel' } },
    { id: 'clock.offline', type: 'device.offline', severity: 'minor', scope: 'device', match: { kind: 'smoke' }, when: { silentFor: '12s' }, clear: { not: { silentFor: '12s' } } },
    { id: 'clock.battery_held', type: 'device.battery_low', severity: 'minor', scope: 'device', match: { kind: 'smoke' }, when: { state: 'battery_low', for: '25s' } },
  ],
};

/** libfaketime's preload library where Debian puts it (multiarch), or undefined. */
function libfaketime(): string | undefined {
  const dirs = ['/usr/lib/faketime', ...(existsSync('/usr/lib') ? readdirSync('/usr/lib').filter((d) => d.endsWith('-linux-gnu')).map((d) => `/usr/lib/${d}/faketime`) : [])];
  return dirs.map((d) => join(d, 'libfaketime.so.1')).find((f) => existsSync(f));
}

let lib: string;

beforeAll(() => {
  if (!existsSync(join(ROOT, 'dist/gateway/cli/main.js'))) throw new Error('dist/ is missing: run `npm run build` before this test');
  const found = libfaketime();
  if (found === undefined) throw new Error('libfaketime is missing: run `npm run test:deps` (scripts/test-deps.sh installs the faketime package)');
  lib = found;
});

/** A wall-clock offset file and the environment that makes a process read its time through it. */
async function fakeClock(): Promise<{ env: NodeJS.ProcessEnv; step(offset: string): Promise<void> }> {
  const dir = await makeTempDir('gridedge-faketime-');
  const file = join(dir.path, 'faketime.rc');
  await writeFile(file, '+0\n');
  return {
    env: { LD_PRELOAD: lib, FAKETIME_TIMESTAMP_FILE: file, FAKETIME_NO_CACHE: '1', FAKETIME_DONT_FAKE_MONOTONIC: '1', FAKETIME_DONT_RESET: '1' },
    step: (offset) => writeFile(file, `${offset}\n`),
  };
}

function incidents(dataDir: string): Incident[] {
  const path = join(dataDir, 'incidents.db');
  if (!existsSync(path)) return [];
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    return db.prepare<[], string>('SELECT json FROM incidents ORDER BY opened_at').pluck().all().map((j) => JSON.parse(j) as Incident);
  } finally {
    db.close();
  }
}

describe('libfaketime', () => {
  it('steps a Node process’s Date.now at runtime and leaves its monotonic clock alone', async () => {
    const clock = await fakeClock();
    const script = "setInterval(() => console.log('T', Date.now() - Math.round(performance.timeOrigin + performance.now())), 100)";
    const probe = await spawnProcess(process.execPath, ['-e', script], { name: 'faketime-probe', env: { ...process.env, ...clock.env } });
    const offsetAfter = async (pattern: RegExp): Promise<number> => Number(/T (-?\d+)/.exec(await probe.waitForLine(pattern, 10_000))?.[1]);
    try {
      // Wall minus (origin + monotonic) is ~0 unfaked and follows the file once it is rewritten.
      expect(Math.abs(await offsetAfter(/^T -?\d+$/))).toBeLessThan(1_000);
      await clock.step('+3600s');
      expect(Math.abs((await offsetAfter(/^T 3[56]\d{5}$/)) - HOUR)).toBeLessThan(1_000);
      await clock.step('-3600s');
      expect(Math.abs((await offsetAfter(/^T -3[56]\d{5}$/)) + HOUR)).toBeLessThan(1_000);
    } finally {
      await probe.stop(2_000);
    }
  });
});

describe('the wall clock steps +1 h, then back 1 h (gridedge start under libfaketime)', () => {
  let site: GatewaySite;

  beforeAll(async () => {
    site = await writeGatewaySite({ devices: [...SMOKE, PAGER], rateLimit: { perSecond: 100, burst: 100 } });
    const config = parseYaml(await readFile(site.configPath, 'utf8')) as Record<string, unknown>;
    await writeFile(join(site.dir, 'clock-rules.yaml'), toYaml(RULES));
    config.rules = ['./clock-rules.yaml'];
    config.escalation = { critical: `${ESCALATE_MS / 1000}s`, major: 'none', minor: 'none', info: 'none' };
    await writeFile(site.configPath, toYaml(config));
  });

  it('escalates after the real delay, raises no offline storm, times `for` and silentFor by real time and stamps readings with the new wall time', async () => {
    const clock = await fakeClock();
    const gw = await spawnGateway(site, { env: clock.env, logLevel: 'warn', startTimeoutMs: 40_000 });
    const clients = new Map<string, MqttClient>();
    for (const d of [...SMOKE, PAGER]) clients.set(d.id, await connectAsDevice(gw.url, d));
    const publish = (d: TestDevice, body: object) => (clients.get(d.id) as MqttClient).publishAsync(`dev/${d.id}/up`, JSON.stringify({ ts: Date.now(), ...body }), { qos: 1 });

    // Heartbeats: A and C all along, B until it is told to stop. `lastB` and `firstC` are when
    // B's last and C's first (battery low) reading were sent: the gateway stamped them later.
    const silent = new Set<string>();
    let lastB = 0;
    let firstC = Number.POSITIVE_INFINITY;
    let beating = true;
    const beats = (async () => {
      for (let seq = 1; beating; seq++) {
        for (const d of SMOKE) {
          if (silent.has(d.id)) continue;
          const sent = performance.now();
          await publish(d, { seq, smoke: false, battery: d === C ? 5 : 85 });
          if (d === B) lastB = sent;
          if (d === C) firstC = Math.min(firstC, sent);
        }
        await sleep(BEAT_MS);
      }
    })();
    const openOf = (type: string) => incidents(site.dataDir).filter((i) => i.type === type);

    try {
      await waitUntil('readings of every smoke detector', () => SMOKE.every((d) => storedReadings(site.dbPath, d.id).length > 0), 20_000, 100);
      const sosSent = performance.now();
      await publish(PAGER, { seq: 1, event: 'sos', battery: 90 });
      await waitUntil('the SOS incident', () => openOf('sos').length === 1, 20_000, 100);
      const opened = openOf('sos')[0] as Incident;
      expect(opened.level).toBe(0);
      expect(opened.ackDeadline).toBe(opened.openedAt + ESCALATE_MS);

      // ---- +1 h -------------------------------------------------------------------------
      await clock.step('+3600s');
      const jumped = Date.now() + HOUR;
      await waitUntil('a reading stamped with the stepped wall time', () => storedReadings(site.dbPath, A.id).some((r) => r.receivedAt >= jumped - 5_000), 20_000, 100);
      await sleep(4 * BEAT_MS); // heartbeats go on in the new hour

      const sosForward = openOf('sos')[0] as Incident;
      // Escalated only if the real delay has passed (a slow machine), never because of the step.
      if (sosForward.level > 0) expect(performance.now() - sosSent).toBeGreaterThanOrEqual(ESCALATE_MS);
      else {
        // The deadline moved with the clock (persisted, so a restart would agree).
        expect(Math.abs((sosForward.ackDeadline as number) - (opened.ackDeadline as number) - HOUR)).toBeLessThan(2_000);
      }
      expect(openOf('device.offline')).toEqual([]); // no offline storm
      if (performance.now() - firstC < HELD_MS) expect(openOf('device.battery_low')).toEqual([]); // `for` not fired by the step
      const newest = storedReadings(site.dbPath, A.id).at(-1);
      expect(Math.abs((newest?.receivedAt ?? 0) - (Date.now() + HOUR))).toBeLessThan(10_000);

      // ---- back 1 h, and B goes silent ---------------------------------------------------
      await clock.step('+0');
      silent.add(B.id);
      const backAt = Date.now();
      await waitUntil('a reading stamped with the wall time after the step back', () => storedReadings(site.dbPath, A.id).some((r) => r.receivedAt >= backAt - 5_000 && r.receivedAt < backAt + HOUR / 2), 20_000, 100);

      // The SOS escalates once the real delay has passed: not an hour late, not early.
      await waitUntil('the SOS to escalate', () => (openOf('sos')[0]?.level ?? 0) >= 1, 45_000, 100);
      expect(performance.now() - sosSent).toBeGreaterThanOrEqual(ESCALATE_MS);
      const escalated = openOf('sos')[0] as Incident;
      const entry = escalated.timeline.find((e) => e.action === 'escalated');
      expect(entry?.note).toMatch(/^to community/);
      expect(Math.abs((entry?.at ?? 0) - Date.now())).toBeLessThan(30_000); // stamped on the wall clock after the step back
      expect(escalated.level).toBe(1); // one level: the ladder did not run ahead

      // B, silent since the step back, is offline after the real silence; A and C are not.
      await waitUntil('B offline', () => openOf('device.offline').length > 0, 45_000, 100);
      expect(performance.now() - lastB).toBeGreaterThanOrEqual(OFFLINE_MS);
      expect(openOf('device.offline').flatMap((i) => i.deviceIds)).toEqual([B.id]);

      // C's battery has been low for the real `for` duration: raised once, not frozen by the step back.
      await waitUntil('C battery low held', () => openOf('device.battery_low').length > 0, 45_000, 100);
      expect(performance.now() - firstC).toBeGreaterThanOrEqual(HELD_MS);
      expect(openOf('device.battery_low').flatMap((i) => i.deviceIds)).toEqual([C.id]);

      // The gateway said what happened, once per step.
      const steps = gw.proc.output().split('\n').filter((l) => l.includes('the wall clock stepped"'));
      expect(steps.map((l) => Math.sign((JSON.parse(l) as { stepMs: number }).stepMs))).toEqual([1, -1]);
    } catch (err) {
      if (err instanceof Error) err.message += `\n--- gridedge output (last 4000 characters) ---\n${gw.proc.output().slice(-4_000)}`;
      throw err;
    } finally {
      beating = false;
      await beats.catch(() => undefined);
      await gw.stop();
    }
  }, 120_000);
});
