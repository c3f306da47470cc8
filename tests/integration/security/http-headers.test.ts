import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DASHBOARD_CSP } from '../../../gateway/http/static.js';
import { MAX_BODY_BYTES } from '../../../gateway/http/server.js';
import { startGatewayInProcess, type InProcessGateway } from '../../helpers/gateway.js';
import { GRID_A, GRID_B, writeSecureSite, type SecureDevice } from './site.js';

// The dashboard's and the API's responses (SPEC §8), every kind of them — static files, JSON, each
// error status, the metrics text, the SSE stream — carry the security headers, and input put into
// paths, query strings, bodies and headers is never reflected: error bodies are JSON with a JSON
// content type and a fixed message, never the input.

const XSS = '<script>alert(1)</script>';
const PAGER: SecureDevice = { id: 'PGR-HDR-1', model: 'pager-json', grid: GRID_A, building: '1', room: '1', secret: 'headers-pager-secret' };
const ADMIN = 'headers-admin-token-3e2d1c0b';
const WORKER = 'headers-worker-token-9a8b7c6d';
const METRICS = 'headers-metrics-token-55aa';

let gw: InProcessGateway;
let port: number;
/** An incident to aim the body cases at (its id replaces `{inc}` in a case's path). */
let incidentId = '';

beforeAll(async () => {
  const site = await writeSecureSite({
    devices: [PAGER],
    users: [
      { name: 'ada', role: 'admin', token: ADMIN },
      { name: 'wang', role: 'grid_worker', grids: [GRID_A], token: WORKER },
    ],
    metricsToken: METRICS,
  });
  gw = await startGatewayInProcess(site);
  port = gw.gateway.httpPort();
  const inc = gw.gateway.safety.manager.onSignal({
    kind: 'raise',
    ruleId: 'test.headers',
    type: 'sos',
    severity: 'critical',
    scope: 'device',
    scopeKey: PAGER.id,
    grid: GRID_A,
    place: { grid: GRID_A, building: '1', room: '1' },
    deviceIds: [PAGER.id],
    at: Date.now(),
  });
  if (!inc) throw new Error('no incident');
  incidentId = inc.id;
});
afterAll(() => gw?.stop());

interface Raw {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** node:http rather than fetch: the path goes out exactly as written (no normalisation), and an SSE body can be cut short. */
function raw(method: string, path: string, opts: { token?: string; body?: string; headers?: Record<string, string>; firstChunkOnly?: boolean } = {}): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { ...opts.headers };
    if (opts.token !== undefined) headers.authorization = `Bearer ${opts.token}`;
    if (opts.body !== undefined) {
      headers['content-type'] ??= 'application/json';
      headers['content-length'] = String(Buffer.byteLength(opts.body));
    }
    const req = request({ host: '127.0.0.1', port, method, path: path.replace('{inc}', incidentId), headers, timeout: 20_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        body += c;
        if (opts.firstChunkOnly) {
          res.destroy();
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body });
        }
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${path}: timeout`)));
    req.on('error', reject);
    if (opts.body !== undefined) req.write(opts.body);
    req.end();
  });
}

type Kind = 'static' | 'api' | 'metrics' | 'sse';
interface Case {
  readonly what: string;
  readonly method: string;
  readonly path: string;
  readonly status: number;
  readonly kind: Kind;
  readonly token?: string;
  readonly body?: string;
  readonly headers?: Record<string, string>;
}

const enc = encodeURIComponent;
const CASES: readonly Case[] = [
  { what: 'the dashboard', method: 'GET', path: '/', status: 200, kind: 'static' },
  { what: 'its script', method: 'GET', path: '/ui/app.js', status: 200, kind: 'static' },
  { what: 'its style sheet', method: 'GET', path: '/ui/style.css', status: 200, kind: 'static' },
  { what: 'health', method: 'GET', path: '/healthz', status: 200, kind: 'api' },
  { what: 'metrics', method: 'GET', path: '/metrics', status: 200, kind: 'metrics', token: METRICS },
  { what: 'the site', method: 'GET', path: '/api/site', status: 200, kind: 'api', token: ADMIN },
  { what: 'incidents', method: 'GET', path: '/api/incidents', status: 200, kind: 'api', token: ADMIN },
  { what: 'devices', method: 'GET', path: '/api/devices', status: 200, kind: 'api', token: ADMIN },
  { what: 'the stream', method: 'GET', path: '/api/stream', status: 200, kind: 'sse', token: ADMIN },
  { what: '400 bad query', method: 'GET', path: `/api/incidents?status=${enc(XSS)}`, status: 400, kind: 'api', token: ADMIN },
  { what: '400 bad time', method: 'GET', path: `/api/incidents?since=${enc(XSS)}`, status: 400, kind: 'api', token: ADMIN },
  { what: '400 unknown query field', method: 'GET', path: `/api/incidents?${enc(XSS)}=1`, status: 400, kind: 'api', token: ADMIN },
  { what: '400 body not JSON', method: 'POST', path: '/api/incidents/{inc}/ack', status: 400, kind: 'api', token: ADMIN, body: XSS },
  { what: '400 body with a markup key', method: 'POST', path: '/api/incidents/{inc}/ack', status: 400, kind: 'api', token: ADMIN, body: JSON.stringify({ [XSS]: XSS }) },
  { what: '400 body with a markup note of the wrong type', method: 'POST', path: '/api/incidents/{inc}/ack', status: 400, kind: 'api', token: ADMIN, body: JSON.stringify({ note: [XSS] }) },
  { what: '400 readings query', method: 'GET', path: `/api/readings?device=${PAGER.id}&from=${enc(XSS)}`, status: 400, kind: 'api', token: ADMIN },
  { what: '401 no token', method: 'GET', path: '/api/incidents', status: 401, kind: 'api' },
  { what: '401 a token that is markup', method: 'GET', path: '/api/incidents', status: 401, kind: 'api', headers: { authorization: `Bearer ${XSS}` } },
  { what: '401 metrics without its token', method: 'GET', path: '/metrics', status: 401, kind: 'api' },
  { what: '403 another grid', method: 'GET', path: `/api/incidents?grid=${GRID_B}`, status: 403, kind: 'api', token: WORKER },
  { what: '403 site-wide list', method: 'GET', path: '/api/devices/unregistered', status: 403, kind: 'api', token: WORKER },
  { what: '404 markup as an incident id', method: 'GET', path: `/api/incidents/${enc(XSS)}`, status: 404, kind: 'api', token: ADMIN },
  { what: '404 markup as a device id', method: 'GET', path: `/api/devices/${enc(XSS)}`, status: 404, kind: 'api', token: ADMIN },
  { what: '404 markup as a route', method: 'GET', path: `/${enc(XSS)}`, status: 404, kind: 'api' },
  { what: '404 raw markup in the path', method: 'GET', path: '/<script>alert(1)</script>', status: 404, kind: 'api' },
  { what: '404 markup as a file', method: 'GET', path: `/ui/${enc(XSS)}.js`, status: 404, kind: 'api' },
  { what: '404 dot-segments', method: 'GET', path: '/ui/..%2F..%2Fpackage.json', status: 404, kind: 'api' },
  { what: '404 markup as an action', method: 'POST', path: `/api/incidents/x/${enc(XSS)}`, status: 404, kind: 'api', token: ADMIN, body: '{}' },
  { what: '405 wrong method', method: 'DELETE', path: '/api/incidents', status: 405, kind: 'api', token: ADMIN },
  { what: '405 PUT on the dashboard', method: 'PUT', path: '/', status: 405, kind: 'api' },
  { what: '404 no such incident', method: 'POST', path: '/api/incidents/x/ack', status: 404, kind: 'api', token: ADMIN, body: XSS },
  { what: '413 body too large', method: 'POST', path: '/api/incidents/{inc}/ack', status: 413, kind: 'api', token: ADMIN, body: `{"note":"${'x'.repeat(MAX_BODY_BYTES + 10)}"}` },
];

function header(r: Raw, name: string): string | undefined {
  const v = r.headers[name.toLowerCase()];
  return Array.isArray(v) ? v.join(', ') : v;
}

describe('security headers on every kind of response', () => {
  it.each(CASES)('$what: $method $path → $status', async (c) => {
    const r = await raw(c.method, c.path, { ...(c.token !== undefined ? { token: c.token } : {}), ...(c.body !== undefined ? { body: c.body } : {}), ...(c.headers ? { headers: c.headers } : {}), firstChunkOnly: c.kind === 'sse' });
    expect(r.status).toBe(c.status);
    expect(header(r, 'X-Content-Type-Options')).toBe('nosniff');
    expect(header(r, 'X-Frame-Options')).toBe('DENY');
    expect(header(r, 'Referrer-Policy')).toBe('no-referrer');
    expect(header(r, 'Content-Security-Policy')).toContain("frame-ancestors 'none'");
    expect(header(r, 'X-Powered-By')).toBeUndefined();
    expect(header(r, 'Server')).toBeUndefined();
    if (c.kind === 'static') {
      expect(header(r, 'Content-Security-Policy')).toBe(DASHBOARD_CSP);
      expect(header(r, 'Content-Security-Policy')).not.toMatch(/unsafe-inline|unsafe-eval|\*/);
    } else {
      // Nothing but the dashboard may load anything: JSON and text are data, not documents.
      expect(header(r, 'Content-Security-Policy')).toMatch(/^default-src 'none'/);
      expect(header(r, 'Cache-Control')).toBe('no-store');
    }
    if (c.kind === 'api') {
      expect(header(r, 'Content-Type')).toBe('application/json; charset=utf-8');
      expect(() => JSON.parse(r.body) as unknown).not.toThrow();
    }
    if (c.kind === 'sse') expect(header(r, 'Content-Type')).toMatch(/^text\/event-stream/);
    if (c.kind === 'metrics') expect(header(r, 'Content-Type')).toMatch(/^text\/plain/);
    if (c.status >= 400) {
      const body = JSON.parse(r.body) as { error?: { code?: string; message?: string } };
      expect(body.error?.code).toMatch(/^HTTP_ERR_/);
    }
  });
});

describe('no reflected input', () => {
  it.each(CASES.filter((c) => c.status >= 400))('$what: the body never holds the markup, raw or JSON-escaped', async (c) => {
    const r = await raw(c.method, c.path, { ...(c.token !== undefined ? { token: c.token } : {}), ...(c.body !== undefined ? { body: c.body } : {}), ...(c.headers ? { headers: c.headers } : {}) });
    for (const s of ['<script', 'alert(1)', '\\u003cscript', '%3Cscript']) expect(r.body.toLowerCase()).not.toContain(s.toLowerCase());
    // No response header carries it either.
    expect(JSON.stringify(r.headers).toLowerCase()).not.toContain('script');
  });

  it('a note with markup is stored and returned as JSON data (escaped by JSON, typed as JSON), never as HTML', async () => {
    const r = await raw('POST', '/api/incidents/{inc}/ack', { token: ADMIN, body: JSON.stringify({ note: XSS }) });
    expect(r.status).toBe(200);
    expect(header(r, 'Content-Type')).toBe('application/json; charset=utf-8');
    expect(header(r, 'X-Content-Type-Options')).toBe('nosniff');
    const body = JSON.parse(r.body) as { incident: { timeline: { note?: string }[] } };
    expect(body.incident.timeline.at(-1)?.note).toBe(XSS);
  });

  it('the dashboard renders data as text, never as markup (no innerHTML with data in app.js)', async () => {
    const js = (await raw('GET', '/ui/app.js')).body;
    expect(js.length).toBeGreaterThan(1000);
    expect(js).not.toMatch(/\.innerHTML\s*=|insertAdjacentHTML|document\.write|\beval\(|new Function\(/);
    const html = (await raw('GET', '/')).body;
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/i); // no inline script (the CSP would block it anyway)
    expect(html).not.toMatch(/\son[a-z]+=/i); // no inline event handlers
  });
});
