import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MODELS } from '../../devices/catalogue.js';
import { demo, demoConfigText, exampleDir, withoutSerialRows } from '../../gateway/cli/commands/demo.js';
import { parseConfig } from '../../gateway/config/load.js';
import { loadRegistry, registryContext } from '../../gateway/registry/registry.js';
import { loadSite } from '../../simulators/site.js';
import type { CliIo } from '../../gateway/cli/command.js';
import { openIncidentStore } from '../../rules/incidents/index.js';
import { cleanupAll } from '../helpers/cleanup.js';
import { makeTempDir } from '../helpers/tmp.js';
import { COMPRESSED_SCENARIO } from './example-site.js';

// `gridedge demo` in-process: the example site with its serial buses on socat ptys, the SPEC §10
// scenario compressed to 5 s (as in reference-scenario.test.ts), stopped by --duration.
const GRID = '110101013001002';
const SCENARIO = COMPRESSED_SCENARIO;

const quiet = { info() {}, warn() {}, error() {} };
const SPEC_TYPES = ['electrical.short_circuit', 'fire', 'fire.confirmed', 'sos'];

interface ApiIncident {
  type: string;
  severity: string;
  grid: string;
  place?: { building?: string; room?: string };
}

/** Polls `probe` every 200 ms until it yields a value; fails after `ms`, or at once if `stopped()`. */
async function until<T>(what: string, probe: () => T | undefined | Promise<T | undefined>, stopped: () => boolean, detail: () => string, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (stopped()) throw new Error(`the demo exited before ${what}\n${detail()}`);
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}\n${detail()}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** The SPEC §10 incidents as the API returns them. */
function checkIncidents(list: ApiIncident[]): void {
  const byType = (type: string) => list.find((i) => i.type === type);
  for (const type of SPEC_TYPES) {
    expect(byType(type), type).toMatchObject({ severity: 'critical', grid: GRID });
  }
  expect(byType('electrical.short_circuit')?.place).toMatchObject({ building: '7', room: 'B1-3' });
  expect(byType('fire')?.place).toMatchObject({ building: '7', room: 'B1-3' });
  expect(byType('fire.confirmed')?.place).toMatchObject({ building: '7', room: 'B1-3' });
  expect(byType('sos')?.place).toMatchObject({ building: '5', room: '302' });
}

describe('gridedge demo', () => {
  afterAll(async () => {
    await cleanupAll();
  });

  it('runs the example site in-process and raises the incidents of SPEC §10', async () => {
    const tmp = await makeTempDir('gridedge-demo-test-');
    const scenario = join(tmp.path, 'scenario.yaml');
    writeFileSync(scenario, SCENARIO);
    const data = join(tmp.path, 'data');
    let out = '';
    let err = '';
    const io: CliIo = { stdout: (t) => void (out += t), stderr: (t) => void (err += t), cwd: tmp.path, models: () => Promise.resolve(MODELS) };

    // Started, not awaited: the API is checked while the demo runs, then its exit is awaited.
    const running = demo.run(['--port', '0', '--http-port', '0', '--duration', '30s', '--data', data, '--scenario', scenario, '--log-level', 'silent'], io);
    let exited = false;
    void running.then(
      () => void (exited = true),
      () => void (exited = true),
    );
    try {
      const port = await until('the http api line', () => /http api {4}http:\/\/127\.0\.0\.1:(\d+)\/api\/incidents/.exec(out)?.[1], () => exited, () => `${out}\n${err}`);
      const url = `http://127.0.0.1:${port}/api/incidents`;
      const incidents = async (token?: string): Promise<ApiIncident[]> => {
        const res = await fetch(url, { headers: token ? { authorization: `Bearer ${token}` } : {}, signal: AbortSignal.timeout(5_000) });
        expect(res.status, await res.clone().text()).toBe(200);
        return ((await res.json()) as { incidents: ApiIncident[] }).incidents;
      };
      const complete = (list: ApiIncident[]) => SPEC_TYPES.every((type) => list.some((i) => i.type === type));
      const admin = await until('the SPEC §10 incidents in GET /api/incidents', async () => {
        const list = await incidents('demo-token-admin-dhs07');
        return complete(list) ? list : undefined;
      }, () => exited, () => `${out}\n${err}`);
      checkIncidents(admin);
      const wang = await incidents('demo-token-wang-dhs07');
      checkIncidents(wang);
      expect(wang.every((i) => i.grid === GRID)).toBe(true);
      const anonymous = await fetch(url, { signal: AbortSignal.timeout(5_000) });
      expect(anonymous.status).toBe(401);
      await anonymous.body?.cancel();
      expect(exited, 'the demo was still running while its API was checked').toBe(false);
    } finally {
      // Bounded by --duration 30s (and the test's timeout).
      await running.catch(() => undefined);
    }
    const code = await running;
    expect(code, `${out}\n${err}`).toBe(0);

    expect(out).toMatch(/MQTT {8}mqtt:\/\/127\.0\.0\.1:\d+/);
    expect(out).toContain(`data        ${data}`);
    expect(out).toMatch(/http api {4}http:\/\/127\.0\.0\.1:\d+\/api\/incidents/);
    expect(out).toContain('demo-token-wang-dhs07');
    expect(out).toContain('uplink      none');
    expect(out).toMatch(/socat pids \d+, \d+, \d+/);
    for (const type of ['electrical.short_circuit', 'fire', 'fire.confirmed', 'sos']) {
      expect(out, out).toMatch(new RegExp(`NEW +${type.replace('.', '\\.')} critical {2}第2网格 \\(${GRID}\\)`));
    }
    expect(out).toMatch(/NEW +sos critical {2}第2网格 \(110101013001002\) building 5 room 302 {2}level 0 {2}open/);

    const store = openIncidentStore({ dataDir: data, logger: quiet, outbox: false });
    try {
      const incidents = store.list({});
      const byType = (type: string) => incidents.find((i) => i.type === type);
      for (const type of ['electrical.short_circuit', 'fire', 'fire.confirmed', 'sos']) {
        expect(byType(type), type).toMatchObject({ severity: 'critical', grid: GRID });
      }
      expect(byType('electrical.short_circuit')?.place).toMatchObject({ building: '7', room: 'B1-3' });
      expect(byType('fire.confirmed')?.place).toMatchObject({ building: '7', room: 'B1-3' });
      expect(byType('sos')?.place).toMatchObject({ building: '5', room: '302' });
    } finally {
      store.close();
    }
  }, 60_000);

  it('without socat: says so and plays the MQTT devices only', async () => {
    const tmp = await makeTempDir('gridedge-demo-test-');
    const scenario = join(tmp.path, 'scenario.yaml');
    writeFileSync(scenario, SCENARIO);
    let out = '';
    let err = '';
    const io: CliIo = { stdout: (t) => void (out += t), stderr: (t) => void (err += t), cwd: tmp.path, models: () => Promise.resolve(MODELS) };
    const path = process.env.PATH;
    process.env.PATH = tmp.path; // no socat there
    let code: number;
    try {
      code = await demo.run(['--port', '0', '--http-port', '0', '--duration', '7s', '--data', join(tmp.path, 'data'), '--scenario', scenario, '--log-level', 'silent'], io);
    } finally {
      process.env.PATH = path;
    }
    expect(code, `${out}\n${err}`).toBe(0);
    expect(err).toContain('socat is not on PATH');
    expect(out).toContain('serial      none (socat not found)');
    expect(out).toMatch(/NEW +fire critical {2}第2网格 \(110101013001002\) building 7 room B1-3/);
    expect(out).not.toContain('electrical.short_circuit');
    expect(out).not.toMatch(/NEW +sos/);
  }, 30_000);

  it('without socat: drops the serial buses and their devices, and the config still loads', async () => {
    const tmp = await makeTempDir('gridedge-demo-nosocat-');
    const example = exampleDir();
    const site = await loadSite(join(example, 'devices.csv'));
    const devicesFile = join(tmp.path, 'devices.csv');
    writeFileSync(devicesFile, withoutSerialRows(readFileSync(site.file, 'utf8'), site.devices));
    const text = demoConfigText(readFileSync(join(example, 'gridedge.yaml'), 'utf8'), { dataDir: join(tmp.path, 'data'), port: 0, devicesFile });
    const config = parseConfig(text, { file: join(example, 'gridedge.yaml'), env: {} });
    expect(config.serial).toEqual([]);
    expect(config.mqtt.listen).toMatchObject({ host: '127.0.0.1', port: 0 });
    expect(config.gateway.dataDir).toBe(join(tmp.path, 'data'));
    const loaded = await loadRegistry(config.devices, registryContext(config, MODELS), { configFile: 'demo', display: (p) => p });
    expect(loaded.ok && loaded.registry.size).toBe(site.devices.filter((d) => d.bus === undefined).length);
    expect(loaded.ok && loaded.registry.list().some((d) => d.bus !== undefined)).toBe(false);
  });
});
