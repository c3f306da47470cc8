import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deviceTopics } from '../../../devices/topics.js';
import type { Incident } from '../../../rules/incidents/index.js';
import { connectAsDevice, startGatewayInProcess, waitUntil, type InProcessGateway } from '../../helpers/gateway.js';
import { GRID_A, GRID_B, writeSecureSite, type SecureDevice, type SecureUser } from './site.js';

// API tokens scoped to grids (SPEC §8), route by route, against a real gateway with users from its
// config: a grid worker of grid A gets nothing of grid B — not in lists, not as a single resource,
// not through an action, not on the event stream, not by replaying it — and the same the other
// way round. http-api.test.ts checks the rules once each; this walks every route for both grids.

const dev = (id: string, model: SecureDevice['model'], grid: string, resident?: SecureDevice['resident']): SecureDevice => ({
  id,
  model,
  grid,
  building: grid === GRID_A ? '5' : '9',
  room: grid === GRID_A ? 'A-301' : 'B-902',
  secret: `scope-secret-${id}`,
  ...(resident ? { resident } : {}),
});
const RESIDENT_A = { name: '王淑兰', phone: '13911112222' };
const RESIDENT_B = { name: '赵德明', phone: '13733334444' };
const SIDE = {
  A: { grid: GRID_A, resident: RESIDENT_A, pager: dev('PGR-SA-1', 'pager-json', GRID_A, RESIDENT_A), smoke: dev('SMK-SA-1', 'smoke-json', GRID_A) },
  B: { grid: GRID_B, resident: RESIDENT_B, pager: dev('PGR-SB-1', 'pager-json', GRID_B, RESIDENT_B), smoke: dev('SMK-SB-1', 'smoke-json', GRID_B) },
} as const;
type Side = keyof typeof SIDE;
const other = (s: Side): Side => (s === 'A' ? 'B' : 'A');

const tokenOf = (name: string): string => `scope-token-${name}-5f1c0e9d7a`;
const USERS: SecureUser[] = [
  { name: 'ada', role: 'admin', token: tokenOf('ada') },
  { name: 'dora', role: 'dispatcher', token: tokenOf('dora') },
  { name: 'workerA', role: 'grid_worker', grids: [GRID_A], token: tokenOf('workerA') },
  { name: 'workerB', role: 'grid_worker', grids: [GRID_B], token: tokenOf('workerB') },
  { name: 'workerAB', role: 'grid_worker', grids: [GRID_A, GRID_B], token: tokenOf('workerAB') },
];
const workerOf = (s: Side): string => `worker${s}`;
const METRICS_TOKEN = 'scope-metrics-token-77aa01';

let gw: InProcessGateway;
let base: string;
const incidentOf: Record<Side, Incident | undefined> = { A: undefined, B: undefined };
const downGot: Record<Side, string[]> = { A: [], B: [] };
const clients: MqttClient[] = [];

async function call(method: string, path: string, user?: string, body?: object): Promise<{ status: number; text: string; json: Record<string, unknown> }> {
  const headers: Record<string, string> = {};
  if (user !== undefined) headers.authorization = `Bearer ${tokenOf(user)}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${base}${path}`, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}), signal: AbortSignal.timeout(20_000) });
  const text = await res.text();
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    // not JSON (metrics)
  }
  return { status: res.status, text, json };
}

/** Every string that would show that something of side `s` leaked. */
function marks(s: Side): string[] {
  const side = SIDE[s];
  const inc = incidentOf[s];
  return [side.grid, side.pager.id, side.smoke.id, side.pager.room, side.resident.name, side.resident.phone, ...(inc ? [inc.id] : [])];
}

function expectNothingOf(s: Side, text: string, except: readonly string[] = []): void {
  for (const m of marks(s)) if (!except.includes(m)) expect(text, `leaks ${m}`).not.toContain(m);
}

beforeAll(async () => {
  const site = await writeSecureSite({ devices: Object.values(SIDE).flatMap((s) => [s.pager, s.smoke]), users: USERS, metricsToken: METRICS_TOKEN });
  gw = await startGatewayInProcess(site);
  base = `http://127.0.0.1:${gw.gateway.httpPort()}`;
  for (const s of ['A', 'B'] as const) {
    const { pager, smoke } = SIDE[s];
    const sm = await connectAsDevice(gw.url, smoke);
    clients.push(sm);
    await sm.subscribeAsync(deviceTopics.down(smoke.id), { qos: 1 });
    sm.on('message', (_t, payload) => downGot[s].push(payload.toString()));
    await sm.publishAsync(deviceTopics.up(smoke.id), JSON.stringify({ smoke: false, battery: 88, ts: Date.now() }), { qos: 1 });
    const pg = await connectAsDevice(gw.url, pager);
    clients.push(pg);
    await pg.publishAsync(deviceTopics.up(pager.id), JSON.stringify({ event: 'sos', ts: Date.now() }), { qos: 1 });
  }
  const { manager } = gw.gateway.safety;
  await waitUntil('both SOS incidents', () => manager.list({}).filter((i) => i.type === 'sos').length === 2, 30_000);
  for (const s of ['A', 'B'] as const) incidentOf[s] = manager.list({}).find((i) => i.type === 'sos' && i.grid === SIDE[s].grid);
});
afterAll(async () => {
  await Promise.all(clients.map((c) => c.endAsync(true)));
  await gw?.stop();
});

const ACTIONS = ['ack', 'dispatch', 'resolve', 'close', 'cancel'] as const;

describe.each(['A', 'B'] as const)('a grid worker of grid %s', (mine) => {
  const theirs = other(mine);
  const me = workerOf(mine);

  it('lists only its own grid’s incidents, whatever the filter; asking for the other grid is 403 with no data', async () => {
    for (const q of ['', '?status=open', `?since=0`, '?status=open&since=0']) {
      const r = await call('GET', `/api/incidents${q}`, me);
      expect(r.status).toBe(200);
      const ids = (r.json.incidents as Incident[]).map((i) => i.id);
      expect(ids).toContain(incidentOf[mine]?.id);
      expect(ids).not.toContain(incidentOf[theirs]?.id);
      expectNothingOf(theirs, r.text);
    }
    const denied = await call('GET', `/api/incidents?grid=${SIDE[theirs].grid}`, me);
    expect(denied.status).toBe(403);
    expectNothingOf(theirs, denied.text);
  });

  it('cannot read the other grid’s incident (403, no data) and can read its own', async () => {
    expect((await call('GET', `/api/incidents/${incidentOf[mine]?.id}`, me)).status).toBe(200);
    const r = await call('GET', `/api/incidents/${incidentOf[theirs]?.id}`, me);
    expect(r.status).toBe(403);
    expectNothingOf(theirs, r.text);
  });

  it.each(ACTIONS)('cannot %s the other grid’s incident: 403, and the incident is unchanged', async (action) => {
    const target = incidentOf[theirs] as Incident;
    const before = await call('GET', `/api/incidents/${target.id}`, 'ada');
    const r = await call('POST', `/api/incidents/${target.id}/${action}`, me, { note: 'not mine' });
    expect(r.status).toBe(403);
    expectNothingOf(theirs, r.text);
    const after = await call('GET', `/api/incidents/${target.id}`, 'ada');
    expect(after.json).toEqual(before.json);
  });

  it('lists only its own grid’s devices, and sees only its own residents', async () => {
    const r = await call('GET', '/api/devices', me);
    expect(r.status).toBe(200);
    const ids = (r.json.devices as { id: string }[]).map((d) => d.id).sort();
    expect(ids).toEqual([SIDE[mine].pager.id, SIDE[mine].smoke.id].sort());
    expect(r.text).toContain(SIDE[mine].resident.phone);
    expectNothingOf(theirs, r.text);
  });

  it('cannot read the other grid’s devices or their readings (403, no data)', async () => {
    for (const d of [SIDE[theirs].pager, SIDE[theirs].smoke]) {
      for (const path of [`/api/devices/${d.id}`, `/api/readings?device=${d.id}`, `/api/readings?device=${d.id}&from=0&to=${Date.now() + 60_000}`]) {
        const r = await call('GET', path, me);
        expect(r.status, path).toBe(403);
        expectNothingOf(theirs, r.text);
      }
    }
    const own = await call('GET', `/api/readings?device=${SIDE[mine].smoke.id}`, me);
    expect(own.status).toBe(200);
    expect((own.json.readings as unknown[]).length).toBeGreaterThan(0);
  });

  it('cannot mute or self-test the other grid’s device: 403 and nothing reaches it', async () => {
    const before = downGot[theirs].length;
    for (const cmd of ['mute', 'self_test']) {
      const r = await call('POST', `/api/devices/${SIDE[theirs].smoke.id}/${cmd}`, me);
      expect(r.status).toBe(403);
      expectNothingOf(theirs, r.text);
    }
    // Its own device does get its command: the route works, the refusal was the grid.
    const ownBefore = downGot[mine].length;
    expect((await call('POST', `/api/devices/${SIDE[mine].smoke.id}/mute`, me)).status).toBe(202);
    await waitUntil('own command delivered', () => downGot[mine].length === ownBefore + 1, 20_000);
    expect(downGot[theirs].length).toBe(before);
  });

  it('gets 403 for the unregistered RF ids (site-wide) and sees only its own grid in /api/site', async () => {
    expect((await call('GET', '/api/devices/unregistered', me)).status).toBe(403);
    const site = await call('GET', '/api/site', me);
    expect(site.status).toBe(200);
    expect((site.json.grids as { code: string }[]).map((g) => g.code)).toEqual([SIDE[mine].grid]);
  });

  it('its token does not open /metrics (a metrics token is configured), and the metrics carry no device or resident', async () => {
    expect((await call('GET', '/metrics', me)).status).toBe(401);
    const res = await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
    expect(res.status).toBe(200);
    const text = await res.text();
    for (const s of ['A', 'B'] as const) {
      for (const m of [SIDE[s].pager.id, SIDE[s].smoke.id, SIDE[s].resident.name, SIDE[s].resident.phone]) expect(text).not.toContain(m);
    }
  });
});

/** Opens the SSE stream (header or `?access_token=`) and collects raw text until closed. */
async function openStream(user: string, opts: { viaQuery?: boolean; lastEventId?: string } = {}) {
  const ctl = new AbortController();
  const headers: Record<string, string> = {};
  if (!opts.viaQuery) headers.authorization = `Bearer ${tokenOf(user)}`;
  if (opts.lastEventId !== undefined) headers['last-event-id'] = opts.lastEventId;
  const url = `${base}/api/stream${opts.viaQuery ? `?access_token=${encodeURIComponent(tokenOf(user))}` : ''}`;
  const res = await fetch(url, { headers, signal: ctl.signal });
  expect(res.status).toBe(200);
  let text = '';
  const reader = res.body?.getReader();
  if (!reader) throw new Error('no body');
  const decoder = new TextDecoder();
  const done = (async () => {
    try {
      for (;;) {
        const chunk = (await reader.read()) as { done: true; value?: undefined } | { done: false; value: Uint8Array };
        if (chunk.done) return;
        text += decoder.decode(chunk.value, { stream: true });
      }
    } catch {
      // aborted
    }
  })();
  return {
    text: () => text,
    close: async () => {
      ctl.abort();
      await done;
    },
  };
}

describe('the event stream', () => {
  it('carries to each worker its own grid’s incident changes and device status only (header and ?access_token=), live and on replay', async () => {
    const streams = {
      A: await openStream('workerA'),
      B: await openStream('workerB', { viaQuery: true }),
      ada: await openStream('ada'),
      AB: await openStream('workerAB', { viaQuery: true }),
    };
    try {
      // A change in each grid: an incident note via ack by the admin, and a device going offline.
      for (const s of ['A', 'B'] as const) {
        expect((await call('POST', `/api/incidents/${incidentOf[s]?.id}/ack`, 'ada', { note: `seen ${s}` })).status).toBe(200);
      }
      const pagerA = clients[1] as MqttClient;
      const pagerB = clients[3] as MqttClient;
      await pagerA.publishAsync(deviceTopics.status(SIDE.A.pager.id), 'offline', { qos: 1, retain: true });
      await pagerB.publishAsync(deviceTopics.status(SIDE.B.pager.id), 'offline', { qos: 1, retain: true });
      const sees = (t: string, s: Side): boolean => t.includes(`"id":"${incidentOf[s]?.id}"`) && t.includes(`"deviceId":"${SIDE[s].pager.id}"`);
      await waitUntil('every stream got what it may see', () => sees(streams.ada.text(), 'A') && sees(streams.ada.text(), 'B') && sees(streams.AB.text(), 'B') && sees(streams.A.text(), 'A') && sees(streams.B.text(), 'B'), 20_000);
      expect(sees(streams.AB.text(), 'A')).toBe(true);
      expectNothingOf('B', streams.A.text());
      expectNothingOf('A', streams.B.text());
      // The stream never carries residents, to anyone.
      for (const t of [streams.ada.text(), streams.AB.text()]) for (const s of ['A', 'B'] as const) expect(t).not.toContain(SIDE[s].resident.phone);
    } finally {
      await Promise.all(Object.values(streams).map((s) => s.close()));
    }
    // Replay from the start: the ring is filtered the same way.
    const replayA = await openStream('workerA', { lastEventId: '0' });
    const replayB = await openStream('workerB', { lastEventId: '0', viaQuery: true });
    try {
      await waitUntil('replays', () => replayA.text().includes(incidentOf.A?.id ?? '?') && replayB.text().includes(incidentOf.B?.id ?? '?'), 20_000);
      expectNothingOf('B', replayA.text());
      expectNothingOf('A', replayB.text());
    } finally {
      await replayA.close();
      await replayB.close();
    }
  });

  it('`?access_token=` opens the stream only: on any other route it is no token (401)', async () => {
    for (const path of ['/api/incidents', `/api/devices/${SIDE.A.smoke.id}`, '/api/site']) {
      const res = await fetch(`${base}${path}${path.includes('?') ? '&' : '?'}access_token=${tokenOf('ada')}`);
      expect(res.status, path).toBe(401);
      expect(await res.text()).not.toContain(GRID_A);
    }
  });
});

describe('tokens', () => {
  it('a token that is almost right is no token: case, prefix, suffix, whitespace inside, another scheme', async () => {
    const t = tokenOf('workerA');
    for (const header of [`Bearer ${t.toUpperCase()}`, `Bearer ${t.slice(0, -1)}`, `Bearer ${t}x`, `Bearer ${t.slice(0, 5)} ${t.slice(5)}`, `Basic ${t}`, t, `Bearer`, `Bearer ${tokenOf('nobody')}`]) {
      const res = await fetch(`${base}/api/incidents`, { headers: { authorization: header } });
      expect(res.status, header).toBe(401);
      expectNothingOf('A', await res.text());
    }
  });

  it('a worker of both grids sees both; admin and dispatcher see everything', async () => {
    for (const u of ['workerAB', 'ada', 'dora']) {
      const r = await call('GET', '/api/incidents', u);
      const ids = (r.json.incidents as Incident[]).map((i) => i.id);
      expect(ids).toEqual(expect.arrayContaining([incidentOf.A?.id, incidentOf.B?.id]));
      expect((await call('GET', `/api/devices/${SIDE.B.pager.id}`, u)).status).toBe(200);
    }
  });
});
