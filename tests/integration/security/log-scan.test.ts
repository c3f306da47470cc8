import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'csv-stringify/sync';
import { connectAsync, type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deviceTopics } from '../../../devices/topics.js';
import { DEVICE_COLUMNS } from '../../../gateway/registry/columns.js';
import { ROOT, spawnGateway, waitUntil, type GatewayProcess, type GatewaySite } from '../../helpers/gateway.js';
import { startMosquitto, type Mosquitto } from '../../helpers/mosquitto.js';
import { runCommand } from '../../helpers/process.js';
import { GRID_A, GRID_B, writeSecureSite, type SecureDevice, type SecureUser } from './site.js';

// SPEC §8: residents' personal data never appears in logs; secrets neither (SPEC §3 stores them as
// scrypt hashes only). A real `gridedge devices import` and a real `gridedge start` at log level
// trace are driven through every path that handles a secret or a resident — imports with plain
// secrets and a bad row, device CONNECTs with right and wrong secrets, an operator with right and
// wrong passwords, a brute-force lockout, an SOS of a resident's pager going upstream over an
// uplink with a username and password, API calls with right, wrong and query-string tokens, the
// metrics token — and every byte they wrote is scanned for each secret and each resident datum.

const RESIDENTS = [
  { name: '刘桂芳', phone: '13612345678' },
  { name: '陈志强', phone: '15987654321' },
  { name: '赵丽华', phone: '18600001111' },
];
const devices: SecureDevice[] = [
  { id: 'PGR-LOG-1', model: 'pager-json', grid: GRID_A, building: '3', room: '101', secret: 'pager-one-secret-Qx7v', resident: RESIDENTS[0] },
  { id: 'SMK-LOG-1', model: 'smoke-json', grid: GRID_B, building: '4', room: '202', secret: 'smoke-one-secret-Lm3k' },
];
/** Imported with plain secrets by the CLI (hashed on the way in). */
const imported: SecureDevice[] = [
  { id: 'PGR-LOG-2', model: 'pager-json', grid: GRID_B, building: '6', room: '606', secret: 'imported-pager-secret-Hd2w', resident: RESIDENTS[1] },
];
/** A CSV whose second row is invalid: the error must name the row, not echo the secret or the resident. */
const badImport: SecureDevice[] = [
  { id: 'PGR-LOG-3', model: 'pager-json', grid: GRID_A, building: '7', room: '707', secret: 'bad-import-secret-Zp9y', resident: RESIDENTS[2] },
  { id: 'PGR-LOG-4', model: 'no-such-model' as SecureDevice['model'], grid: '999', building: '7', room: '708', secret: 'bad-import-secret-Wq4r', resident: RESIDENTS[2] },
];
const users: SecureUser[] = [
  { name: 'ada', role: 'admin', token: 'log-scan-admin-token-8c1f44e2' },
  { name: 'wang', role: 'grid_worker', grids: [GRID_A], token: 'log-scan-worker-token-0b9d37aa' },
];
const METRICS_TOKEN = 'log-scan-metrics-token-61d0ff';
const OPERATOR = { username: 'log-operator', password: 'log-operator-password-4e7c' };
const UPLINK = { username: 'gw-log', password: 'uplink-password-93kf0q' };
const WRONG = ['wrong-device-guess-a1', 'wrong-device-guess-b2', 'wrong-operator-guess-c3', 'wrong-api-token-d4e5f6a7b8', 'wrong-uplink-probe-e5'];

let upstream: Mosquitto;
let site: GatewaySite;
let gw: GatewayProcess;
let output = '';
let registryText = '';

function csv(rows: readonly SecureDevice[]): string {
  const cells = rows.map((d) => {
    const c: Record<string, string> = { id: d.id, model: d.model, grid: d.grid, building: d.building, room: d.room, secret: d.secret, resident_name: d.resident?.name ?? '', resident_phone: d.resident?.phone ?? '' };
    return DEVICE_COLUMNS.map((k) => c[k] ?? '');
  });
  return stringify([[...DEVICE_COLUMNS], ...cells]);
}

async function cli(args: string[]): Promise<string> {
  try {
    return await runCommand(process.execPath, [join(ROOT, 'bin/gridedge.js'), ...args], { timeoutMs: 60_000 });
  } catch (err) {
    // A refused import exits 2: its message is output too.
    return String((err as Error).message);
  }
}

async function connackOf(url: string, opts: { clientId: string; username: string; password: string }): Promise<number> {
  try {
    const c = await connectAsync(url, { ...opts, protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 10_000 });
    await c.endAsync();
    return 0;
  } catch (err) {
    return Number((err as { code?: unknown }).code ?? -1);
  }
}

beforeAll(async () => {
  upstream = await startMosquitto({ allowAnonymous: false, users: { [UPLINK.username]: UPLINK.password, city: 'city-password-x1' } });
  site = await writeSecureSite({
    gatewayId: 'gw-log',
    devices,
    users,
    metricsToken: METRICS_TOKEN,
    operators: [OPERATOR],
    uplink: { url: upstream.url, prefix: 'city/110101013', username: UPLINK.username, password: UPLINK.password },
  });

  // `gridedge devices import`: one good file (plain secrets, a resident), one refused.
  await writeFile(join(site.dir, 'good.csv'), csv(imported));
  await writeFile(join(site.dir, 'bad.csv'), csv(badImport));
  output += await cli(['devices', 'import', join(site.dir, 'good.csv'), '-c', site.configPath]);
  output += await cli(['devices', 'import', join(site.dir, 'bad.csv'), '-c', site.configPath]);
  output += await cli(['devices', 'list', '-c', site.configPath]);
  output += await cli(['config', 'check', '-c', site.configPath]);
  registryText = await readFile(join(site.dir, 'devices.csv'), 'utf8');

  gw = await spawnGateway(site, { logLevel: 'trace', startTimeoutMs: 60_000 });
}, 120_000);
afterAll(async () => {
  await gw?.stop();
});

describe('a whole scenario at log level trace', () => {
  it('runs: devices, operators, a lockout, an SOS upstream, the API, the metrics', async () => {
    const url = gw.url;
    const city: MqttClient = await connectAsync(upstream.url, { clientId: 'city', username: 'city', password: 'city-password-x1', protocolVersion: 4, reconnectPeriod: 0 });
    const cityGot: string[] = [];
    city.on('message', (_t, p) => cityGot.push(p.toString()));
    await city.subscribeAsync('city/#', { qos: 1 });

    // Devices: wrong secrets first (logged refusals), then the right ones.
    const pager = devices[0] as SecureDevice;
    const pager2 = imported[0] as SecureDevice;
    expect(await connackOf(url, { clientId: pager.id, username: pager.id, password: WRONG[0] as string })).toBe(4);
    expect(await connackOf(url, { clientId: pager2.id, username: pager2.id, password: WRONG[1] as string })).toBe(4);
    // An installer who swapped the two fields: the username is the secret, and must not be logged as an id.
    expect(await connackOf(url, { clientId: pager.id, username: pager.secret, password: pager.id })).toBe(5);
    expect(await connackOf(url, { clientId: 'log-tool', username: OPERATOR.username, password: WRONG[2] as string })).toBe(4);
    expect(await connackOf(url, { clientId: 'log-tool', username: OPERATOR.username, password: OPERATOR.password })).toBe(0);
    const p1 = await connectAsync(url, { clientId: pager.id, username: pager.id, password: pager.secret, protocolVersion: 4, reconnectPeriod: 0 });
    const p2 = await connectAsync(url, { clientId: pager2.id, username: pager2.id, password: pager2.secret, protocolVersion: 4, reconnectPeriod: 0 });
    // The SOS of a resident's pager, and a payload that is refused (logged with its reason).
    await p1.publishAsync(deviceTopics.up(pager.id), JSON.stringify({ event: 'sos', ts: Date.now() }), { qos: 1 });
    await p2.publishAsync(deviceTopics.up(pager2.id), JSON.stringify({ event: 'fall', ts: Date.now() }), { qos: 1 });
    await p2.publishAsync(deviceTopics.up(pager2.id), `{"event":"sos","note":"${RESIDENTS[1]?.name ?? ''} is not a field"}`, { qos: 1 });
    await p1.publishAsync(deviceTopics.up(pager2.id), '{"event":"sos"}', { qos: 1 }); // ACL refusal
    // Telemetry (logged at debug, every reading) from a pager with a resident and a smoke detector.
    await p2.publishAsync(deviceTopics.up(pager2.id), JSON.stringify({ event: 'heartbeat', battery: 80, ts: Date.now() }), { qos: 1 });
    const smoke = devices[1] as SecureDevice;
    const s1 = await connectAsync(url, { clientId: smoke.id, username: smoke.id, password: smoke.secret, protocolVersion: 4, reconnectPeriod: 0 });
    await s1.publishAsync(deviceTopics.up(smoke.id), JSON.stringify({ smoke: false, battery: 91, ts: Date.now() }), { qos: 1 });
    await s1.endAsync();
    await waitUntil('incidents at the city', () => cityGot.filter((m) => m.includes('"type":"sos"') || m.includes('"type":"fall"')).length >= 2, 60_000);
    await p1.endAsync();
    await p2.endAsync();

    // A brute force from this address: wrong secrets until the lockout.
    for (let i = 0; i < 12; i++) await connackOf(url, { clientId: pager.id, username: pager.id, password: `${WRONG[0]}-${i}` });

    // The API: the HTTP port is in the log line "gateway started".
    const started = /"http":(\d+)/.exec(gw.proc.output());
    expect(started).not.toBeNull();
    const base = `http://127.0.0.1:${started?.[1]}`;
    const admin = users[0] as SecureUser;
    const worker = users[1] as SecureUser;
    const auth = (t: string) => ({ authorization: `Bearer ${t}` });
    const list = await fetch(`${base}/api/incidents`, { headers: auth(admin.token) });
    expect(list.status).toBe(200);
    const { incidents } = (await list.json()) as { incidents: { id: string; grid: string }[] };
    const sos = incidents.find((i) => i.grid === GRID_A);
    expect((await fetch(`${base}/api/devices`, { headers: auth(worker.token) })).status).toBe(200);
    expect((await fetch(`${base}/api/devices/${pager.id}`, { headers: auth(worker.token) })).status).toBe(200);
    expect((await fetch(`${base}/api/devices/${pager2.id}`, { headers: auth(worker.token) })).status).toBe(403);
    expect((await fetch(`${base}/api/incidents`, { headers: auth(WRONG[3] as string) })).status).toBe(401);
    expect((await fetch(`${base}/api/incidents/${sos?.id}/ack`, { method: 'POST', headers: { ...auth(worker.token), 'content-type': 'application/json' }, body: '{"note":"on my way"}' })).status).toBe(200);
    expect((await fetch(`${base}/api/incidents?grid=x&access_token=${admin.token}`)).status).toBe(401);
    const ctl = new AbortController();
    const stream = await fetch(`${base}/api/stream?access_token=${encodeURIComponent(worker.token)}`, { signal: ctl.signal });
    expect(stream.status).toBe(200);
    ctl.abort();
    expect((await fetch(`${base}/metrics`, { headers: auth(METRICS_TOKEN) })).status).toBe(200);
    expect((await fetch(`${base}/metrics`, { headers: auth(admin.token) })).status).toBe(401);
    await city.endAsync();
    await gw.stop();
    output += gw.proc.output();
  }, 180_000);

  it('wrote plenty (trace level really was on)', async () => {
    if (process.env.GRIDEDGE_KEEP_LOG) await writeFile(process.env.GRIDEDGE_KEEP_LOG, output);
    expect(output.split('\n').length).toBeGreaterThan(50);
    expect(output).toMatch(/"level":20/); // debug and below were on (nothing logs at trace itself)
    expect(output).toContain('"msg":"refused"');
    expect(output).toContain('locked out');
    expect(output).toContain('http request');
  });

  it('holds no secret, password, token or hash', () => {
    const secrets = [
      ...devices.map((d) => d.secret),
      ...imported.map((d) => d.secret),
      ...badImport.map((d) => d.secret),
      ...users.map((u) => u.token),
      METRICS_TOKEN,
      OPERATOR.password,
      UPLINK.password,
      ...WRONG,
    ];
    for (const s of secrets) expect(output, `a secret in the logs: ${s.slice(0, 6)}…`).not.toContain(s);
    // The stored scrypt hashes (from the registry file) and the token hashes' form.
    const hashes = registryText.match(/scrypt\$[^,\s"]+/g) ?? [];
    expect(hashes.length).toBe(devices.length + imported.length);
    for (const h of hashes) expect(output).not.toContain(h);
    expect(output).not.toMatch(/scrypt\$/);
    expect(output).not.toMatch(/sha256:[0-9a-f]{64}/);
  });

  it('holds no resident’s name or phone', () => {
    for (const r of RESIDENTS) {
      expect(output, 'a resident name in the logs').not.toContain(r.name);
      expect(output, 'a resident phone in the logs').not.toContain(r.phone);
    }
  });
});
