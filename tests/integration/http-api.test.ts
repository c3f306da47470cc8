import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DeviceRecord } from '../../devices/device-record.js';
import { hashToken } from '../../gateway/config/tokens.js';
import type { HttpUser } from '../../gateway/http/auth.js';
import { createHttpServer, MAX_BODY_BYTES, type HttpServer, type HttpServerDeps } from '../../gateway/http/server.js';
import type { DeviceRegistry } from '../../gateway/registry/registry.js';
import type { Incident } from '../../rules/incidents/index.js';
import { createMqttDevice, type MqttDevice } from '../../simulators/mqtt-device.js';
import { cleanupAll } from '../helpers/cleanup.js';
import { GRID, makeDevices, mqttModel, startGatewayInProcess, waitUntil, writeGatewaySite, type InProcessGateway } from '../helpers/gateway.js';

// SPEC §8 over real HTTP, against a real in-process gateway (its incident manager, store and
// downlink to a simulated MQTT device).

const OTHER = '110101013001003';
const RESIDENT = { name: '张秀英', phone: '13912345678' };
const OTHER_RESIDENT = { name: '李建国', phone: '13800001111' };

const tok = (name: string) => `${name}-token-0123456789abcdef`;
const u = (name: string, role: HttpUser['role'], grids: string[] = []): HttpUser => ({ name, role, grids, tokenHash: hashToken(tok(name)) });
const USERS = [u('ada', 'admin'), u('dora', 'dispatcher'), u('wang', 'grid_worker', [GRID]), u('li', 'grid_worker', [OTHER])];
const METRICS_TOKEN = 'metrics-token-0123456789';

const [smoke, pager] = [...makeDevices('SMK', 1, { model: 'smoke-json' }), ...makeDevices('PGR', 1, { model: 'pager-json' })] as const;
if (!smoke || !pager) throw new Error('no devices');

let gw: InProcessGateway;
let http: HttpServer;
let base: string;
let sims: MqttDevice[];
const httpLogs: string[] = [];
let mine: Incident;
let theirs: Incident;

/** The gateway's registry, with residents and a device in a grid the gateway's site does not list (for the 403s). */
function withResidents(loaded: DeviceRegistry): Pick<DeviceRegistry, 'get' | 'list'> {
  const base0 = loaded.list();
  const other: DeviceRecord = { id: 'OTH-00', model: 'smoke-json', place: { grid: OTHER, building: '9', room: 'R1' }, resident: OTHER_RESIDENT };
  const records = [...base0.map((d) => (d.id === pager?.id ? { ...d, resident: RESIDENT } : d)), other];
  return { get: (id) => records.find((d) => d.id === id), list: () => records };
}

async function call(method: string, path: string, opts: { user?: string; token?: string; body?: string | object; headers?: Record<string, string> } = {}) {
  const headers: Record<string, string> = { ...opts.headers };
  const token = opts.token ?? (opts.user !== undefined ? tok(opts.user) : undefined);
  if (token !== undefined) headers.authorization = `Bearer ${token}`;
  if (opts.body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${base}${path}`, {
    method,
    headers,
    ...(opts.body !== undefined ? { body: typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body) } : {}),
  });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json: json as Record<string, unknown> & { error?: { code: string; message: string; path?: string } } };
}

interface SseEvent {
  id?: string;
  event?: string;
  data?: string;
}

/** A Server-Sent Events client on fetch: parses frames into `events` until closed. */
async function openStream(user: string, lastEventId?: string) {
  const ctl = new AbortController();
  const headers: Record<string, string> = { authorization: `Bearer ${tok(user)}` };
  if (lastEventId !== undefined) headers['last-event-id'] = lastEventId;
  const res = await fetch(`${base}/api/stream`, { headers, signal: ctl.signal });
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
  const events: SseEvent[] = [];
  const comments: string[] = [];
  const reader = res.body?.getReader();
  if (!reader) throw new Error('no body');
  const decoder = new TextDecoder();
  let buf = '';
  const done = (async () => {
    try {
      for (;;) {
        const chunk = (await reader.read()) as { done: true; value?: undefined } | { done: false; value: Uint8Array };
        if (chunk.done) return;
        buf += decoder.decode(chunk.value, { stream: true });
        let i: number;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const ev: SseEvent = {};
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) comments.push(line);
            const m = /^(id|event|data): ?(.*)$/.exec(line);
            if (m) ev[m[1] as 'id' | 'event' | 'data'] = m[2];
          }
          if (ev.event !== undefined) events.push(ev);
        }
      }
    } catch {
      // aborted
    }
  })();
  return {
    events,
    comments,
    close: async () => {
      ctl.abort();
      await done;
    },
  };
}

beforeAll(async () => {
  const site = await writeGatewaySite({ devices: [smoke, pager] });
  let httpRegistry: Pick<DeviceRegistry, 'get' | 'list'> | undefined;
  gw = await startGatewayInProcess(site, {
    registry: (loaded) => {
      httpRegistry = withResidents(loaded);
      return loaded;
    },
  });
  if (!httpRegistry) throw new Error('no registry');
  sims = [smoke, pager].map((d) => createMqttDevice({ url: gw.url, deviceId: d.id, secret: d.secret, model: mqttModel(d.model), heartbeatMs: 0 }));
  await Promise.all(sims.map((s) => s.start()));

  const logger = pino(
    { level: 'info' },
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        httpLogs.push(...chunk.toString('utf8').split('\n').filter(Boolean));
        cb();
      },
    }),
  );
  const { manager, downlink } = gw.gateway.safety;
  http = createHttpServer({
    host: '127.0.0.1',
    port: 0,
    users: USERS,
    metricsTokenHash: hashToken(METRICS_TOKEN),
    manager,
    registry: httpRegistry,
    store: gw.gateway.store,
    downlink,
    health: () => gw.gateway.health(),
    unregistered: () => [{ bus: 'rf0', id: 'ABCDE', presses: 2 }],
    metrics: () => Promise.resolve('# HELP gridedge_up 1\ngridedge_up 1\n'),
    logger,
    clock: Date.now,
  });
  await http.start();
  base = `http://127.0.0.1:${http.port()}`;

  // A real SOS through MQTT, the rules and the incident manager.
  const pagerSim = sims[1] as MqttDevice;
  await pagerSim.send({ events: ['heartbeat'], metrics: { battery_pct: 77 } }, { qos: 1 });
  await pagerSim.send({ events: ['sos'] }, { qos: 1 });
  await waitUntil('the sos incident', () => manager.list({}).some((i) => i.type === 'sos'));
  mine = manager.list({}).find((i) => i.type === 'sos') as Incident;
  // An incident in a grid the first worker does not have.
  const now = Date.now();
  theirs = manager.onSignal({
    kind: 'raise',
    ruleId: 'test.other',
    type: 'fire',
    severity: 'critical',
    scope: 'device',
    scopeKey: 'OTH-00',
    grid: OTHER,
    place: { grid: OTHER, building: '9', room: 'R1' },
    deviceIds: ['OTH-00'],
    at: now,
  }) as Incident;
  expect(theirs.grid).toBe(OTHER);
});

afterAll(async () => {
  await http?.stop();
  await Promise.all((sims ?? []).map((s) => s.stop()));
  await gw?.stop();
  await cleanupAll();
});


/** A second server on the same gateway, without metrics and the main server's extras. */
function extraServer(over: Partial<HttpServerDeps> = {}): HttpServer {
  return createHttpServer({
    host: '127.0.0.1',
    port: 0,
    users: USERS,
    manager: gw.gateway.safety.manager,
    registry: gw.registry,
    store: gw.gateway.store,
    downlink: gw.gateway.safety.downlink,
    health: () => ({ ok: true }),
    unregistered: () => [],
    logger: pino({ level: 'silent' }),
    clock: Date.now,
    ...over,
  });
}
describe('unauthenticated routes', () => {
  it('GET /healthz needs no token and carries the security headers', async () => {
    const r = await call('GET', '/healthz');
    expect([200, 503]).toContain(r.status);
    expect(r.json).toHaveProperty('broker');
    expect(r.headers.get('x-content-type-options')).toBe('nosniff');
    expect(r.headers.get('referrer-policy')).toBe('no-referrer');
    expect(r.headers.get('cache-control')).toBe('no-store');
  });

  it('GET /metrics needs the metrics token when one is configured', async () => {
    expect((await call('GET', '/metrics')).status).toBe(401);
    expect((await call('GET', '/metrics', { user: 'ada' })).status).toBe(401);
    const ok = await call('GET', '/metrics', { token: METRICS_TOKEN });
    expect(ok.status).toBe(200);
    expect(ok.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(ok.text).toContain('gridedge_up 1');
  });

  it('GET /metrics is 404 when no metrics are provided', async () => {
    const bare = extraServer();
    await bare.start();
    try {
      const res = await fetch(`http://127.0.0.1:${bare.port()}/metrics`);
      expect(res.status).toBe(404);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('HTTP_ERR_NOT_FOUND');
    } finally {
      await bare.stop();
    }
  });
});

describe('authentication (SPEC §8)', () => {
  it.each(['/api/incidents', `/api/incidents/x`, '/api/devices', '/api/devices/unregistered', '/api/readings?device=x', '/api/stream'])('401 without a token or with a wrong one: %s', async (path) => {
    for (const token of [undefined, 'wrong-token-0123456789abcdef']) {
      const r = await call('GET', path, token !== undefined ? { token } : {});
      expect(r.status).toBe(401);
      expect(r.json.error?.code).toBe('HTTP_ERR_UNAUTHORIZED');
      expect(r.headers.get('www-authenticate')).toBe('Bearer');
    }
    expect((await call('POST', `/api/incidents/${mine.id}/ack`, { body: {} })).status).toBe(401);
  });

  it('404 for an unknown route, 405 for a known path with the wrong method', async () => {
    const nf = await call('GET', '/api/nothing/<script>', { user: 'ada' });
    expect(nf.status).toBe(404);
    expect(nf.json.error?.code).toBe('HTTP_ERR_NOT_FOUND');
    expect(nf.text).not.toContain('<script>');
    const m = await call('DELETE', '/api/incidents', { user: 'ada' });
    expect(m.status).toBe(405);
    expect(m.json.error?.code).toBe('HTTP_ERR_METHOD');
  });
});

describe('incidents', () => {
  it('admins and dispatchers list every grid; a grid worker only theirs', async () => {
    for (const user of ['ada', 'dora']) {
      const r = await call('GET', '/api/incidents', { user });
      expect(r.status).toBe(200);
      const ids = (r.json.incidents as Incident[]).map((i) => i.id);
      expect(ids).toEqual(expect.arrayContaining([mine.id, theirs.id]));
    }
    const wang = await call('GET', '/api/incidents', { user: 'wang' });
    expect((wang.json.incidents as Incident[]).map((i) => i.id)).toEqual([mine.id]);
    const li = await call('GET', '/api/incidents', { user: 'li' });
    expect((li.json.incidents as Incident[]).map((i) => i.id)).toEqual([theirs.id]);
  });

  it('filters by status, grid and since; asking for another grid is 403', async () => {
    const byGrid = await call('GET', `/api/incidents?grid=${OTHER}`, { user: 'dora' });
    expect((byGrid.json.incidents as Incident[]).map((i) => i.id)).toEqual([theirs.id]);
    const none = await call('GET', '/api/incidents?status=closed,cancelled', { user: 'ada' });
    expect(none.json.incidents).toEqual([]);
    const future = await call('GET', `/api/incidents?since=${new Date(Date.now() + 3_600_000).toISOString()}`, { user: 'ada' });
    expect(future.json.incidents).toEqual([]);
    const denied = await call('GET', `/api/incidents?grid=${OTHER}`, { user: 'wang' });
    expect(denied.status).toBe(403);
    expect(Object.keys(denied.json)).toEqual(['error']);
    expect(denied.json.error?.code).toBe('HTTP_ERR_FORBIDDEN');
  });

  it.each([
    ['status=burning', 'query.status.0'],
    ['grid=12', 'query.grid'],
    ['since=yesterday', 'query.since'],
    ['colour=red', 'query.colour'],
  ])('400 with the field path for ?%s', async (q, path) => {
    const r = await call('GET', `/api/incidents?${q}`, { user: 'ada' });
    expect(r.status).toBe(400);
    expect(r.json.error).toMatchObject({ code: 'HTTP_ERR_BAD_REQUEST', path });
  });

  it('a single incident: 200 inside one’s grids, 403 with no data outside, 404 unknown', async () => {
    const ok = await call('GET', `/api/incidents/${mine.id}`, { user: 'wang' });
    expect(ok.status).toBe(200);
    expect((ok.json.incident as Incident).id).toBe(mine.id);
    const denied = await call('GET', `/api/incidents/${theirs.id}`, { user: 'wang' });
    expect(denied.status).toBe(403);
    expect(denied.text).not.toContain(theirs.id);
    expect(denied.text).not.toContain('OTH-00');
    expect((await call('GET', '/api/incidents/nope-20240101-000001', { user: 'ada' })).status).toBe(404);
  });

  it('never carries residents’ data', async () => {
    const r = await call('GET', '/api/incidents', { user: 'ada' });
    expect(r.text).not.toContain(RESIDENT.name);
    expect(r.text).not.toContain(RESIDENT.phone);
  });

  it('bad bodies: 400 with the path, 413 beyond the limit, unknown action 404', async () => {
    const notJson = await call('POST', `/api/incidents/${mine.id}/ack`, { user: 'wang', body: '{"note":' });
    expect(notJson.status).toBe(400);
    expect(notJson.json.error).toMatchObject({ code: 'HTTP_ERR_BAD_REQUEST', path: 'body' });
    const wrongType = await call('POST', `/api/incidents/${mine.id}/ack`, { user: 'wang', body: { note: 42 } });
    expect(wrongType.json.error).toMatchObject({ code: 'HTTP_ERR_BAD_REQUEST', path: 'note' });
    const extra = await call('POST', `/api/incidents/${mine.id}/ack`, { user: 'wang', body: { note: 'x', actor: 'city:evil' } });
    expect(extra.json.error).toMatchObject({ code: 'HTTP_ERR_BAD_REQUEST', path: 'actor' });
    const tooLong = await call('POST', `/api/incidents/${mine.id}/ack`, { user: 'wang', body: { note: 'x'.repeat(501) } });
    expect(tooLong.json.error).toMatchObject({ code: 'HTTP_ERR_BAD_REQUEST', path: 'note' });
    const big = await call('POST', `/api/incidents/${mine.id}/ack`, { user: 'wang', body: { note: 'x'.repeat(MAX_BODY_BYTES) } });
    expect(big.status).toBe(413);
    expect(big.json.error?.code).toBe('HTTP_ERR_TOO_LARGE');
    expect((await call('POST', `/api/incidents/${mine.id}/explode`, { user: 'wang', body: {} })).status).toBe(404);
    // None of these changed it.
    expect(gw.gateway.safety.manager.get(mine.id)?.status).toBe('open');
  });

  it('a grid worker cannot act on another grid’s incident (403)', async () => {
    const r = await call('POST', `/api/incidents/${theirs.id}/ack`, { user: 'wang', body: {} });
    expect(r.status).toBe(403);
    expect(gw.gateway.safety.manager.get(theirs.id)?.status).toBe('open');
  });

  it('streams incident changes to whoever may see them, and resumes with Last-Event-ID', async () => {
    const wang = await openStream('wang');
    const ada = await openStream('ada');
    try {
      // The transition, then the gateway's broadcast of it (as onIncidentChange will do).
      const acked = await call('POST', `/api/incidents/${mine.id}/ack`, { user: 'wang', body: { note: '马上到' } });
      expect(acked.status).toBe(200);
      const incident = acked.json.incident as Incident;
      expect(incident.status).toBe('acknowledged');
      expect(incident.timeline.at(-1)).toMatchObject({ action: 'acknowledged', actor: 'user:wang', note: '马上到' });
      http.broadcast({ type: 'incident', data: incident });
      http.broadcast({ type: 'incident', data: gw.gateway.safety.manager.get(theirs.id) as Incident });
      http.broadcast({ type: 'device', data: { deviceId: 'OTH-00', online: false, at: Date.now() } });
      await waitUntil('ada got all three', () => ada.events.length >= 3, 5_000);
      await waitUntil('wang got his', () => wang.events.length >= 1, 5_000);
      expect(wang.events).toHaveLength(1);
      expect(wang.events[0]?.event).toBe('incident');
      expect((JSON.parse(wang.events[0]?.data ?? '{}') as Incident).id).toBe(mine.id);
      expect(ada.events.map((e) => e.event)).toEqual(['incident', 'incident', 'device']);
      const ids = ada.events.map((e) => Number(e.id));
      expect(ids[1]).toBeGreaterThan(ids[0] as number);
      expect(ids[2]).toBeGreaterThan(ids[1] as number);
      expect(ada.events.map((e) => e.data).join('')).not.toContain(OTHER_RESIDENT.name);

      // Reconnect after the first event: the two missed ones come back, in order.
      const resumed = await openStream('ada', ada.events[0]?.id);
      await waitUntil('the replay', () => resumed.events.length >= 2, 5_000);
      expect(resumed.events.map((e) => e.id)).toEqual([ada.events[1]?.id, ada.events[2]?.id]);
      await resumed.close();
      // A grid worker resuming gets only his grid's.
      const wangAgain = await openStream('wang', '0');
      await waitUntil('wang replay', () => wangAgain.events.length >= 1, 5_000);
      await new Promise((r) => setTimeout(r, 100));
      expect(wangAgain.events.map((e) => e.id)).toEqual([wang.events[0]?.id]);
      await wangAgain.close();
    } finally {
      await wang.close();
      await ada.close();
    }
  });

  it('a refused transition is 409', async () => {
    const r = await call('POST', `/api/incidents/${mine.id}/close`, { user: 'dora', body: {} });
    expect(r.status).toBe(409);
    expect(r.json.error?.code).toBe('HTTP_ERR_CONFLICT');
    const resolve = await call('POST', `/api/incidents/${mine.id}/resolve`, { user: 'dora' });
    expect(resolve.status).toBe(200);
    expect((resolve.json.incident as Incident).timeline.at(-1)).toMatchObject({ action: 'resolved', actor: 'user:dora' });
  });
});

describe('stream housekeeping', () => {
  it('sends heartbeat comments, and a resync when the ring no longer reaches back', async () => {
    const small = extraServer({ streamHeartbeatMs: 50, streamRingSize: 2 });
    await small.start();
    const saved = base;
    base = `http://127.0.0.1:${small.port()}`;
    try {
      const live = await openStream('ada');
      await waitUntil('a heartbeat', () => live.comments.some((c) => c.startsWith(': heartbeat')), 2_000);
      for (let i = 0; i < 4; i++) small.broadcast({ type: 'incident', data: mine });
      await waitUntil('four events', () => live.events.length >= 4, 2_000);
      await live.close();
      // Events 1 and 2 fell out of a ring of two: resuming after 1 says resync, then replays 3 and 4.
      const late = await openStream('ada', '1');
      await waitUntil('resync and the replay', () => late.events.length >= 3, 2_000);
      expect(late.events.map((e) => e.event)).toEqual(['resync', 'incident', 'incident']);
      expect(late.events.slice(1).map((e) => e.id)).toEqual(['3', '4']);
      await late.close();
    } finally {
      base = saved;
      await small.stop();
    }
  });
});

describe('devices and readings', () => {
  it('lists devices by grid, with residents only to those whose grids include them', async () => {
    const ada = await call('GET', '/api/devices', { user: 'ada' });
    const ids = (ada.json.devices as { id: string }[]).map((d) => d.id);
    expect(ids).toEqual([smoke.id, pager.id, 'OTH-00']);
    expect(ada.text).toContain(RESIDENT.phone);
    expect(ada.text).toContain(OTHER_RESIDENT.phone);
    expect(ada.text).not.toContain('scrypt$');
    const wang = await call('GET', '/api/devices', { user: 'wang' });
    expect((wang.json.devices as { id: string }[]).map((d) => d.id)).toEqual([smoke.id, pager.id]);
    expect(wang.text).toContain(RESIDENT.name);
    expect(wang.text).not.toContain(OTHER_RESIDENT.name);
    expect(wang.text).not.toContain(OTHER_RESIDENT.phone);
  });

  it('a single device: last reading, online, battery; 403 outside one’s grids, 404 unknown', async () => {
    const r = await call('GET', `/api/devices/${pager.id}`, { user: 'wang' });
    expect(r.status).toBe(200);
    const d = r.json.device as { online: boolean; battery: { pct: number | null }; lastReading: { deviceId: string } | null; resident?: unknown };
    expect(d.online).toBe(true);
    expect(d.battery.pct).toBe(77);
    expect(d.lastReading?.deviceId).toBe(pager.id);
    expect(d.resident).toEqual(RESIDENT);
    const never = await call('GET', `/api/devices/${smoke.id}`, { user: 'wang' });
    expect(never.json.device).toMatchObject({ online: false, lastSeen: null, lastReading: null });
    const denied = await call('GET', '/api/devices/OTH-00', { user: 'wang' });
    expect(denied.status).toBe(403);
    expect(denied.text).not.toContain(OTHER_RESIDENT.name);
    expect((await call('GET', '/api/devices/NOPE', { user: 'ada' })).status).toBe(404);
  });

  it('unregistered RF ids: admins and dispatchers only', async () => {
    const r = await call('GET', '/api/devices/unregistered', { user: 'dora' });
    expect(r.status).toBe(200);
    expect(r.json.unregistered).toEqual([{ bus: 'rf0', id: 'ABCDE', presses: 2 }]);
    expect((await call('GET', '/api/devices/unregistered', { user: 'wang' })).status).toBe(403);
  });

  it('mute and self_test reach the device; a worker of another grid gets 403', async () => {
    const smokeSim = sims[0] as MqttDevice;
    expect((await call('POST', `/api/devices/${smoke.id}/mute`, { user: 'wang' })).status).toBe(202);
    expect((await call('POST', `/api/devices/${smoke.id}/self_test`, { user: 'dora' })).status).toBe(202);
    await waitUntil('both commands', () => smokeSim.status.commands.length >= 2, 5_000);
    expect(smokeSim.status.commands.map((c) => c.command?.cmd)).toEqual(['mute', 'self_test']);
    expect((await call('POST', `/api/devices/${smoke.id}/mute`, { user: 'li' })).status).toBe(403);
    expect((await call('POST', '/api/devices/OTH-00/mute', { user: 'wang' })).status).toBe(403);
    expect((await call('GET', `/api/devices/${smoke.id}/mute`, { user: 'ada' })).status).toBe(405);
  });

  it('readings of a device, by time range, only within one’s grids', async () => {
    const all = await call('GET', `/api/readings?device=${pager.id}`, { user: 'wang' });
    expect(all.status).toBe(200);
    const readings = all.json.readings as { ts: number; deviceId: string }[];
    expect(readings.length).toBeGreaterThanOrEqual(2);
    const first = readings[0] as { ts: number };
    const ranged = await call('GET', `/api/readings?device=${pager.id}&from=${first.ts}&to=${first.ts}`, { user: 'wang' });
    expect((ranged.json.readings as unknown[]).length).toBeGreaterThanOrEqual(1);
    expect((ranged.json.readings as { ts: number }[]).every((x) => x.ts === first.ts)).toBe(true);
    expect((await call('GET', '/api/readings?device=OTH-00', { user: 'wang' })).status).toBe(403);
    expect((await call('GET', '/api/readings?device=OTH-00', { user: 'li' })).status).toBe(200);
    const missing = await call('GET', '/api/readings', { user: 'ada' });
    expect(missing.json.error).toMatchObject({ code: 'HTTP_ERR_BAD_REQUEST', path: 'query.device' });
    const backwards = await call('GET', `/api/readings?device=${pager.id}&from=2000&to=1000`, { user: 'ada' });
    expect(backwards.json.error).toMatchObject({ code: 'HTTP_ERR_BAD_REQUEST', path: 'query.from' });
  });
});

describe('logs', () => {
  it('one line per request (method, path without query, status, user, duration) and never a resident or token', async () => {
    await call('GET', `/api/devices/${pager.id}?secret=${RESIDENT.phone}`, { user: 'wang' });
    await waitUntil('the log line', () => httpLogs.some((l) => l.includes(`/api/devices/${pager.id}`)), 2_000);
    const line = JSON.parse(httpLogs.find((l) => l.includes(`"path":"/api/devices/${pager.id}"`)) ?? '{}') as Record<string, unknown>;
    expect(line).toMatchObject({ method: 'GET', path: `/api/devices/${pager.id}`, status: 200, user: 'wang' });
    expect(typeof line.ms).toBe('number');
    const everything = [...httpLogs, ...gw.logs()].join('\n');
    for (const secret of [RESIDENT.name, RESIDENT.phone, OTHER_RESIDENT.name, OTHER_RESIDENT.phone, tok('wang'), tok('ada'), METRICS_TOKEN]) {
      expect(everything).not.toContain(secret);
    }
  });
});
