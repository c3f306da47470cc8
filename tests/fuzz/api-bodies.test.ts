// Issue 8 item 2, the HTTP API: random and mutated JSON bodies, wrong content types, huge bodies
// and invalid UTF-8 on every mutating route (gateway/http/routes: the incident actions, mute,
// self_test) of an in-process gateway. Every answer is a success for a valid body or a 4xx with
// the error catalogue's JSON, never a 5xx; the server keeps answering and the gateway keeps
// storing readings.
import { request } from 'node:http';
import { appendFile } from 'node:fs/promises';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deviceTopics } from '../../devices/topics.js';
import { HTTP_ERRORS } from '../../gateway/http/errors.js';
import { connectAsDevice, makeDevices, mqttModel, startGatewayInProcess, waitUntil, writeGatewaySite, type InProcessGateway, type TestDevice } from '../helpers/gateway.js';
import { INVALID_UTF8, mutationOf, nested } from './mutate.js';

const NUM_RUNS = 40;
const TOKEN = 'fuzz-admin-token-0123456789abcdef';
const MAX_BODY = 16 * 1024;

const [smoke, pager] = makeDevices('FZH', 2, { model: 'smoke-json' }) as [TestDevice, TestDevice];
let gw: InProcessGateway;
let base: string;
let incidentId: string;
const statuses: Record<string, number> = {};

interface Answer {
  readonly status: number;
  readonly type: string;
  readonly text: string;
}

/** One request on its own connection, with exactly the headers given (node:http, so that nothing is "fixed" on the way). */
function send(method: string, path: string, opts: { headers?: Record<string, string | number>; body?: Buffer | Buffer[]; auth?: boolean } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${base}${path}`,
      { method, agent: false, headers: { ...(opts.auth === false ? {} : { Authorization: `Bearer ${TOKEN}` }), ...opts.headers }, timeout: 20_000 },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type'] ?? ''), text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${path}: no answer within 20 s`)));
    req.on('error', reject);
    const parts = opts.body === undefined ? [] : Array.isArray(opts.body) ? opts.body : [opts.body];
    for (const p of parts) req.write(p);
    req.end();
  });
}

/** A 4xx with `{"error":{"code","message"}}` from the catalogue (status matching the code), or a 2xx. Never a 5xx. */
function expectCleanAnswer(a: Answer, what: string): void {
  statuses[a.status] = (statuses[a.status] ?? 0) + 1;
  expect(a.status, `${what}: ${a.text.slice(0, 200)}`).toBeLessThan(500);
  expect(a.type).toMatch(/^application\/json/);
  const body = JSON.parse(a.text) as { error?: { code: keyof typeof HTTP_ERRORS; message: string } };
  if (a.status >= 400) {
    expect(body.error, what).toBeDefined();
    const code = body.error?.code as keyof typeof HTTP_ERRORS;
    expect(Object.keys(HTTP_ERRORS)).toContain(code);
    expect(HTTP_ERRORS[code].status).toBe(a.status);
    expect(body.error?.message.length).toBeGreaterThan(0);
  } else {
    expect(a.status).toBeGreaterThanOrEqual(200);
  }
}

const json = { 'Content-Type': 'application/json' };

beforeAll(async () => {
  const site = await writeGatewaySite({ devices: [smoke, pager] });
  await appendFile(site.configPath, `users:\n  - { name: admin, role: admin, token: ${TOKEN} }\n`, 'utf8');
  gw = await startGatewayInProcess(site, { logLevel: 'warn' });
  base = `http://127.0.0.1:${gw.gateway.httpPort()}`;
  // A fire incident to act on.
  const c = await connectAsDevice(gw.url, smoke);
  await c.publishAsync(deviceTopics.up(smoke.id), mqttModel('smoke-json').encode({ ts: Date.now(), metrics: { battery_pct: 80 }, state: { smoke: true } }), { qos: 1 });
  await c.endAsync();
  await waitUntil('a fire incident', () => gw.gateway.safety.manager.list({ status: ['open'] }).length > 0, 20_000);
  incidentId = gw.gateway.safety.manager.list({ status: ['open'] })[0]?.id ?? '';
});
afterAll(async () => {
  await gw?.stop();
  console.info(`api fuzz: answers by status ${JSON.stringify(statuses)}`);
});

/** Every POST route, with real ids (so that validation, not the 404, is what answers). */
function mutatingPaths(): string[] {
  return [
    ...['ack', 'dispatch', 'resolve', 'close', 'cancel'].map((a) => `/api/incidents/${incidentId}/${a}`),
    `/api/devices/${pager.id}/mute`,
    `/api/devices/${pager.id}/self_test`,
  ];
}

describe('every mutating route: a success or a catalogued 4xx, never a 5xx', () => {
  it('the routes exist and take a valid body', async () => {
    expect(incidentId).not.toBe('');
    const ok = await send('POST', `/api/devices/${pager.id}/mute`, { headers: json, body: Buffer.from('{}') });
    expect(ok.status).toBe(202);
  });

  it(`random JSON values as bodies (${NUM_RUNS} runs per route)`, async () => {
    for (const path of mutatingPaths()) {
      await fc.assert(
        fc.asyncProperty(fc.jsonValue({ maxDepth: 4 }), async (value) => {
          expectCleanAnswer(await send('POST', path, { headers: json, body: Buffer.from(JSON.stringify(value) ?? 'null') }), path);
        }),
        { numRuns: NUM_RUNS },
      );
    }
  });

  it(`mutated valid bodies: flips, truncation, invalid UTF-8, NUL, deep nesting, odd numbers, huge strings, duplicate keys, BOM (${NUM_RUNS} runs per route)`, async () => {
    const seed = Buffer.from(JSON.stringify({ note: '已到现场, 楼道有烟' }), 'utf8');
    for (const path of mutatingPaths()) {
      await fc.assert(
        fc.asyncProperty(mutationOf(seed, MAX_BODY), async (m) => {
          expectCleanAnswer(await send('POST', path, { headers: json, body: m.bytes }), `${path} ${m.classes.join('+')}`);
        }),
        { numRuns: NUM_RUNS },
      );
    }
  });

  it('invalid UTF-8 inside a JSON string is refused, not stored as U+FFFD', async () => {
    for (const path of mutatingPaths()) {
      for (const seq of INVALID_UTF8) {
        const body = Buffer.concat([Buffer.from('{"note":"a'), Buffer.from(seq), Buffer.from('b"}')]);
        const a = await send('POST', path, { headers: json, body });
        expectCleanAnswer(a, path);
        expect(a.status, `${path} ${Buffer.from(seq).toString('hex')}`).toBe(400);
      }
    }
  });

  it('a body in another media type is refused with 415, whatever it holds', async () => {
    const note = Buffer.from('{"note":"x"}');
    const types = ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/xml', 'application/json; charset=gbk', 'application/jsonx', ''];
    for (const path of mutatingPaths()) {
      for (const type of types) {
        const a = await send('POST', path, { headers: type === '' ? {} : { 'Content-Type': type }, body: note });
        expectCleanAnswer(a, `${path} ${type}`);
        expect(a.status, `${path} ${type || '(no content type)'}`).toBe(415);
      }
      // The media types a JSON body may have.
      for (const type of ['application/json; charset=utf-8', 'Application/JSON', 'application/merge-patch+json']) {
        expectCleanAnswer(await send('POST', path, { headers: { 'Content-Type': type }, body: Buffer.from('{}') }), `${path} ${type}`);
      }
    }
  });

  it('huge bodies: declared, chunked and lying about their length: 413 (or 400 for a length the body does not have)', async () => {
    const path = `/api/incidents/${incidentId}/ack`;
    const big = Buffer.alloc(MAX_BODY + 1, 0x20);
    const declared = await send('POST', path, { headers: { ...json, 'Content-Length': big.length }, body: big });
    expectCleanAnswer(declared, 'declared');
    expect(declared.status).toBe(413);
    const chunked = await send('POST', path, { headers: { ...json, 'Transfer-Encoding': 'chunked' }, body: Array.from({ length: 64 }, () => Buffer.alloc(16 * 1024, 0x20)) });
    expectCleanAnswer(chunked, 'chunked 1 MiB');
    expect(chunked.status).toBe(413);
    const deep = await send('POST', path, { headers: json, body: Buffer.from(`{"note":${nested(MAX_BODY / 2 - 8)}}`) });
    expectCleanAnswer(deep, 'deep nesting at the size limit');
    expect(deep.status).toBe(400);
    for (const path2 of mutatingPaths()) {
      const a = await send('POST', path2, { headers: { ...json, 'Content-Length': 10 * 1024 * 1024 }, body: Buffer.from('{}') }).catch((err: Error) => err);
      // The server answers 413 at once and closes; the client may see the answer or the reset.
      if (!(a instanceof Error)) expectCleanAnswer(a, `${path2} 10 MiB declared`);
    }
  });

  it('malformed paths, unknown ids and actions, missing and wrong tokens: 4xx', async () => {
    const cases: [string, Record<string, string>, boolean][] = [
      [`/api/incidents/%ZZ/ack`, json, true],
      [`/api/incidents/${incidentId}/explode`, json, true],
      [`/api/incidents/no-such-incident/ack`, json, true],
      [`/api/devices/NOPE/mute`, json, true],
      [`/api/devices/%E0%A4%A/mute`, json, true],
      [`/api/incidents/${incidentId}/ack`, json, false],
      [`/api/devices/${pager.id}/mute`, { ...json, Authorization: 'Bearer wrong' }, false],
      [`/api/devices/${pager.id}/mute`, { ...json, Authorization: 'Basic Zm9vOmJhcg==' }, false],
    ];
    for (const [path, headers, auth] of cases) {
      const a = await send('POST', path, { headers, body: Buffer.from('{}'), auth });
      expectCleanAnswer(a, path);
      expect(a.status).toBeGreaterThanOrEqual(400);
    }
  });

  it('afterwards the server answers, nothing failed inside it, and a reading is still stored', async () => {
    const health = await send('GET', '/healthz', { auth: false });
    expect(health.status).toBe(200);
    const list = await send('GET', '/api/incidents');
    expect(list.status).toBe(200);
    expect(gw.logs().filter((l) => l.includes('http handler failed'))).toEqual([]);
    const c = await connectAsDevice(gw.url, smoke);
    const ts = Date.now();
    await c.publishAsync(deviceTopics.up(smoke.id), mqttModel('smoke-json').encode({ ts, metrics: { battery_pct: 70 }, state: { smoke: false } }), { qos: 1 });
    await c.endAsync();
    expect(gw.gateway.store.queryReadings({ deviceId: smoke.id, from: ts, to: ts })).toHaveLength(1);
  });
});
