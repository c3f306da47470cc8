import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import type { Incident } from '../../rules/incidents/index.js';
import { createMqttDevice, type MqttDevice } from '../../simulators/mqtt-device.js';
import { cleanupAll, registerCleanup } from '../helpers/cleanup.js';
import { startMosquitto } from '../helpers/mosquitto.js';
import { GRID, makeDevices, mqttModel, ROOT, startGatewayInProcess, waitUntil, writeGatewaySite, type InProcessGateway } from '../helpers/gateway.js';

// SPEC §8 dashboard, in Debian's Chromium against a real in-process gateway: an SOS sent over
// MQTT appears live, a grid worker acknowledges it with the button, another grid's incident stays
// out of sight, the upstream (city) broker receives the acknowledgement, and Chinese names render.
// Screenshots go to docs/screenshots/.

const OTHER = '110101013001003';
const tok = (name: string) => `${name}-dashboard-token-0123456789`;
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const SHOTS = join(ROOT, 'docs/screenshots');
const PREFIX = 'city/110101013';

const [pager, smoke] = [...makeDevices('PGR', 1, { model: 'pager-json' }), ...makeDevices('SMK', 1, { model: 'smoke-json' })] as const;
if (!pager || !smoke) throw new Error('no devices');

let gw: InProcessGateway;
let base: string;
let browser: Browser;
let sim: MqttDevice;
let city: MqttClient;

interface Upstream {
  topic: string;
  incident: { id: string; status: string; version: number; grid: string; timeline: { action: string; actor: string }[] };
}
const upstream: Upstream[] = [];

async function openDashboard(user: string, viewport: { width: number; height: number }): Promise<Page> {
  const context = await browser.newContext({ viewport, deviceScaleFactor: 1, locale: 'zh-CN', timezoneId: 'Asia/Shanghai' });
  const page = await context.newPage();
  page.on('pageerror', (err) => console.error('page error:', err.message));
  await page.goto(base);
  await page.fill('#token', tok(user));
  await page.click('#login button[type=submit]');
  await page.waitForSelector('.tile');
  expect(await page.isHidden('#login')).toBe(true);
  return page;
}

beforeAll(async () => {
  // The city side: a real Mosquitto as the upstream broker, and a subscriber on the whole prefix.
  const broker = await startMosquitto();
  city = await mqtt.connectAsync(broker.url, { clientId: 'city-platform', protocolVersion: 4 });
  registerCleanup('city subscriber', () => city.endAsync());
  city.on('message', (topic, payload) => {
    if (topic.includes('/incidents/')) upstream.push({ topic, incident: JSON.parse(payload.toString()) as Upstream['incident'] });
  });
  await city.subscribeAsync(`${PREFIX}/#`, { qos: 1 });

  const site = await writeGatewaySite({ devices: [pager, smoke] });
  // The helper's site has one grid and no users: add a second grid and three users.
  const config = parse(await readFile(site.configPath, 'utf8')) as Record<string, Record<string, unknown>>;
  (config.site?.grids as unknown[]).push({ code: OTHER, name: '第3网格' });
  config.users = [
    { name: 'admin', role: 'admin', token: tok('admin') },
    { name: 'wang', role: 'grid_worker', grids: [GRID], token: tok('wang') },
    { name: 'li', role: 'grid_worker', grids: [OTHER], token: tok('li') },
  ] as unknown as Record<string, unknown>;
  config.uplink = { url: broker.url, prefix: PREFIX };
  await writeFile(site.configPath, stringify(config), 'utf8');
  gw = await startGatewayInProcess(site);
  base = `http://127.0.0.1:${gw.gateway.httpPort()}`;
  sim = createMqttDevice({ url: gw.url, deviceId: pager.id, secret: pager.secret, model: mqttModel(pager.model), heartbeatMs: 0 });
  await sim.start();
  registerCleanup('pager sim', () => sim.stop());
  for (const pct of [81, 80, 78, 77]) await sim.send({ events: ['heartbeat'], metrics: { battery_pct: pct } }, { qos: 1 });

  // launch() gives Chromium a fresh temporary --user-data-dir of its own (it refuses the flag).
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS, timeout: 20_000 });
  registerCleanup('chromium', () => browser.close());
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await sim?.stop();
  await gw?.stop();
  await cleanupAll();
});

describe('serving the dashboard', () => {
  it('GET / is the page, with a CSP that allows only its own scripts, styles and API', async () => {
    const res = await fetch(`${base}/`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
    const csp = res.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("connect-src 'self'");
    expect(csp).not.toContain('unsafe-inline');
    expect(await res.text()).toContain('<script type="module" src="/ui/app.js">');
    expect((await fetch(`${base}/ui/app.js`)).headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect((await fetch(`${base}/ui/style.css`)).headers.get('content-type')).toBe('text/css; charset=utf-8');
  });

  it('serves nothing outside gateway/http/public', async () => {
    for (const path of ['/ui/..%2F..%2F..%2Fpackage.json', '/ui/..%2Fstatic.ts', '/ui/%2e%2e/%2e%2e/package.json', '/ui/.eslintrc.js', '/ui/app.js%00.html', '/ui/..%5Cstatic.ts', '/ui/../../package.json', '/ui/nope.js', '/ui/public/app.js', '/ui/static.ts']) {
      const res = await fetch(`${base}${path}`);
      expect([404, 405], path).toContain(res.status);
      expect(await res.text(), path).not.toContain('gridedge');
    }
  });

  it('GET /api/site gives a grid worker only their grids, with names; the token works on the stream only as a query', async () => {
    const site = async (user: string) => (await (await fetch(`${base}/api/site`, { headers: { authorization: `Bearer ${tok(user)}` } })).json()) as { street: { name: string }; grids: { code: string; name: string }[] };
    expect((await site('admin')).grids.map((g) => g.name)).toEqual(['第2网格', '第3网格']);
    const wang = await site('wang');
    expect(wang.street.name).toBe('东花市街道');
    expect(wang.grids).toEqual([{ code: GRID, name: '第2网格', community: '北里社区' }]);
    expect((await fetch(`${base}/api/site`)).status).toBe(401);
    expect((await fetch(`${base}/api/incidents?access_token=${tok('wang')}`)).status).toBe(401);
    const ctl = new AbortController();
    const stream = await fetch(`${base}/api/stream?access_token=${tok('wang')}`, { signal: ctl.signal });
    expect(stream.status).toBe(200);
    ctl.abort();
    expect(gw.logs().some((l) => l.includes(tok('wang')))).toBe(false);
  });
});

describe('the dashboard in Chromium', () => {
  it('shows a live SOS to its grid worker, who acknowledges it; another grid’s incident stays hidden', async () => {
    const page = await openDashboard('wang', { width: 1280, height: 800 });
    await page.waitForSelector('#live.on');
    expect(await page.textContent('#street')).toBe('东花市街道');
    expect(await page.locator('.tile').allTextContents()).toEqual(['第2网格北里社区']);
    await page.waitForSelector(`tr[data-device="${pager.id}"]`);
    await page.waitForSelector('#chart polyline');

    const { manager } = gw.gateway.safety;
    const theirs = manager.onSignal({
      kind: 'raise', ruleId: 'test.other', type: 'fire', severity: 'critical', scope: 'device', scopeKey: 'OTH-00',
      grid: OTHER, place: { grid: OTHER, building: '9', room: 'R1' }, deviceIds: ['OTH-00'], at: Date.now(),
    }) as Incident;

    // A real SOS: MQTT → rules → incident manager → SSE → the page, without a reload.
    await sim.send({ events: ['sos'] }, { qos: 1 });
    await waitUntil('the sos incident', () => manager.list({}).some((i) => i.type === 'sos'), 10_000);
    const sos = manager.list({}).find((i) => i.type === 'sos') as Incident;
    const item = page.locator(`li.incident[data-id="${sos.id}"]`);
    await item.waitFor({ timeout: 10_000 });
    expect(await item.getAttribute('data-status')).toBe('open');
    expect(await page.locator(`.tile[data-grid="${GRID}"]`).getAttribute('data-severity')).toBe(sos.severity);
    expect(await page.locator(`li.incident[data-id="${theirs.id}"]`).count()).toBe(0);
    expect(await page.textContent('#feed')).toContain('第2网格');
    await page.screenshot({ path: join(SHOTS, 'dashboard-desktop.png') });

    await item.locator('button[data-action=ack]').click();
    await waitUntil('acknowledged in the manager', () => manager.get(sos.id)?.status === 'acknowledged', 10_000);
    await page.waitForSelector(`li.incident[data-id="${sos.id}"][data-status="acknowledged"]`);

    // …and the upstream broker receives the change, by the grid worker, on the SPEC §7 topic.
    await waitUntil('the acknowledgement upstream', () => upstream.some((u) => u.incident.id === sos.id && u.incident.status === 'acknowledged'), 10_000);
    const acked = upstream.find((u) => u.incident.id === sos.id && u.incident.status === 'acknowledged') as Upstream;
    expect(acked.topic).toBe(`${PREFIX}/${GRID}/incidents/${sos.id}`);
    expect(acked.incident.grid).toBe(GRID);
    expect(acked.incident.timeline.at(-1)).toMatchObject({ action: 'acknowledged', actor: 'user:wang' });
    expect(upstream.some((u) => u.incident.id === sos.id && u.incident.status === 'open' && u.incident.version < acked.incident.version)).toBe(true);
    expect(await page.locator(`li.incident[data-id="${theirs.id}"]`).count()).toBe(0);
    await page.context().close();
  });

  it('fits a phone, and an admin sees both grids', async () => {
    const page = await openDashboard('admin', { width: 390, height: 844 });
    expect(await page.locator('.tile').allTextContents()).toEqual(['1第2网格北里社区', '1第3网格北里社区']);
    const width = await page.evaluate<number>('document.documentElement.scrollWidth');
    expect(width).toBeLessThanOrEqual(390);
    await page.screenshot({ path: join(SHOTS, 'dashboard-phone.png'), fullPage: false });
    await page.context().close();
  });
});
