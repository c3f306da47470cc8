// node:http, not a framework (no new dependency): a dozen routes fit one small router, zod does
// the validation, and Server-Sent Events need the raw response anyway.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { authenticate, canSeeGrid, metricsAllowed, type HttpUser } from './auth.js';
import { readJsonBody } from './body.js';
import { errorBody, HttpError } from './errors.js';
import { createRouter, type Route, type RouteContext } from './router.js';
import { deviceRoutes, type DeviceApiDeps } from './routes/devices.js';
import { incidentRoutes, type IncidentApi } from './routes/incidents.js';
import { readingRoutes } from './routes/readings.js';
import { createStreamHub, type StreamEvent } from './routes/stream.js';
import { staticRoutes } from './static.js';

export type { StreamEvent } from './routes/stream.js';

/** Request bodies are small JSON objects (`{"note": …}`): anything bigger is refused. */
export const MAX_BODY_BYTES = 16 * 1024;

export interface HttpServerDeps {
  readonly host: string;
  /** 0: the OS picks a free port (tests); read it with port(). */
  readonly port: number;
  readonly users: readonly HttpUser[];
  readonly metricsTokenHash?: string;
  readonly manager: IncidentApi;
  readonly registry: DeviceApiDeps['registry'];
  readonly store: DeviceApiDeps['store'];
  readonly downlink: DeviceApiDeps['downlink'];
  readonly health: () => object;
  readonly unregistered: () => unknown[];
  /** Prometheus text exposition; `GET /metrics` is 404 without it. */
  readonly metrics?: () => Promise<string>;
  readonly logger: Pick<Logger, 'info' | 'warn' | 'error'>;
  readonly clock: () => number;
  /** SSE heartbeat comment interval; default 15 s. */
  readonly streamHeartbeatMs?: number;
  /** Recent stream events kept for Last-Event-ID; default 1000. */
  readonly streamRingSize?: number;
  /** The site (names of the street, communities and grids) for `GET /api/site`; 404 without it. */
  readonly site?: SiteInfo;
  /** The dashboard's files; default gateway/http/public. */
  readonly publicDir?: string;
}

export interface SiteInfo {
  readonly gatewayId: string;
  readonly street: { readonly code: string; readonly name: string };
  readonly communities: readonly { readonly code: string; readonly name: string }[];
  readonly grids: readonly { readonly code: string; readonly name: string }[];
}

export interface HttpServer {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** The bound port (after start()). */
  port(): number;
  /** Sends an event to every stream client allowed to see it, and keeps it for resumption. */
  broadcast(event: StreamEvent): void;
}

const SECURITY_HEADERS = {
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'Cache-Control': 'no-store',
  'X-Frame-Options': 'DENY',
  'Content-Security-Policy': "default-src 'none'; frame-ancestors 'none'",
} as const;

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

/**
 * The HTTP API (SPEC §8). Construction only stores dependencies; start() listens, stop() ends the
 * streams and closes every connection. One log line per request: method, path without the query,
 * status, user name and duration — never a body, a query string, a token or a resident.
 */
export function createHttpServer(deps: HttpServerDeps): HttpServer {
  const { logger, clock } = deps;
  const hub = createStreamHub({
    registry: deps.registry,
    ...(deps.streamHeartbeatMs !== undefined ? { heartbeatMs: deps.streamHeartbeatMs } : {}),
    ...(deps.streamRingSize !== undefined ? { ringSize: deps.streamRingSize } : {}),
  });

  const routes: Route[] = [
    {
      method: 'GET',
      path: '/healthz',
      auth: 'none',
      handle() {
        const health = deps.health();
        const ok = (health as { ok?: unknown }).ok !== false;
        return { status: ok ? 200 : 503, body: health };
      },
    },
    {
      method: 'GET',
      path: '/metrics',
      auth: 'metrics',
      async handle({ res }) {
        if (!deps.metrics) throw new HttpError('HTTP_ERR_NOT_FOUND');
        const text = await deps.metrics();
        res.writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8', 'Content-Length': Buffer.byteLength(text) });
        res.end(text);
        return undefined;
      },
    },
    {
      // The dashboard's map: the grids the user may see, with their names.
      method: 'GET',
      path: '/api/site',
      auth: 'user',
      handle({ user }) {
        const site = deps.site;
        if (!site || !user) throw new HttpError('HTTP_ERR_NOT_FOUND');
        const communities = new Map(site.communities.map((c) => [c.code, c.name]));
        const grids = site.grids
          .filter((g) => canSeeGrid(user, g.code))
          .map((g) => ({ code: g.code, name: g.name, community: communities.get(g.code.slice(9, 12)) ?? null }));
        return { body: { gateway: site.gatewayId, street: site.street, user: { name: user.name, role: user.role }, grids } };
      },
    },
    ...incidentRoutes({ manager: deps.manager }),
    ...deviceRoutes(deps),
    ...readingRoutes(deps),
    hub.route,
    ...staticRoutes(deps.publicDir),
  ];
  const router = createRouter(routes);

  async function handle(req: IncomingMessage, res: ServerResponse, path: string, query: URLSearchParams, who: { user?: HttpUser }): Promise<void> {
    const match = router.match(req.method ?? 'GET', path);
    if (!match) throw new HttpError('HTTP_ERR_NOT_FOUND', 'no such route');
    const { route, params } = match;
    let user: HttpUser | undefined;
    if (route.auth === 'user') {
      // EventSource cannot send a header: the stream alone also takes `?access_token=` (never
      // logged: the request log has the path without its query).
      const fromQuery = route === hub.route && req.headers.authorization === undefined ? query.get('access_token') : null;
      user = authenticate(fromQuery !== null ? `Bearer ${fromQuery}` : req.headers.authorization, deps.users);
      if (!user) throw new HttpError('HTTP_ERR_UNAUTHORIZED');
      who.user = user;
    } else if (route.auth === 'metrics' && !metricsAllowed(req.headers.authorization, deps.metricsTokenHash)) {
      throw new HttpError('HTTP_ERR_UNAUTHORIZED');
    }
    const ctx: RouteContext = { req, res, params, query, user, body: () => readJsonBody(req, MAX_BODY_BYTES) };
    const reply = await route.handle(ctx);
    if (reply) sendJson(res, reply.status ?? 200, reply.body);
  }

  function onRequest(req: IncomingMessage, res: ServerResponse): void {
    const started = clock();
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) res.setHeader(k, v);
    let path = '/';
    let query = new URLSearchParams();
    try {
      const url = new URL(req.url ?? '/', 'http://localhost');
      path = url.pathname;
      query = url.searchParams;
    } catch {
      path = '?';
    }
    const who: { user?: HttpUser } = {};
    res.on('close', () => {
      logger.info({ module: 'http', method: req.method, path, status: res.statusCode, user: who.user?.name, ms: clock() - started }, 'http request');
    });
    handle(req, res, path, query, who).catch((err: unknown) => {
      const e = err instanceof HttpError ? err : undefined;
      if (!e) logger.error({ module: 'http', err, method: req.method, path }, 'http handler failed');
      if (res.headersSent) {
        res.destroy();
        return;
      }
      const httpErr = e ?? new HttpError('HTTP_ERR_INTERNAL');
      if (httpErr.code === 'HTTP_ERR_TOO_LARGE') res.setHeader('Connection', 'close');
      if (httpErr.code === 'HTTP_ERR_UNAUTHORIZED') res.setHeader('WWW-Authenticate', 'Bearer');
      sendJson(res, httpErr.status, errorBody(httpErr));
    });
  }

  let server: Server | undefined;

  return {
    async start() {
      const s = createServer(onRequest);
      server = s;
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.listen(deps.port, deps.host, () => {
          s.off('error', reject);
          resolve();
        });
      });
    },
    async stop() {
      const s = server;
      if (!s) return;
      server = undefined;
      hub.closeAll();
      await new Promise<void>((resolve) => {
        s.close(() => resolve());
        s.closeAllConnections();
      });
    },
    port() {
      const addr = server?.address();
      return addr && typeof addr === 'object' ? addr.port : 0;
    },
    broadcast: (event) => hub.broadcast(event),
  };
}
