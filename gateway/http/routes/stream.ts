import type { ServerResponse } from 'node:http';
import type { Incident } from '../../../rules/incidents/index.js';
import type { DeviceRegistry } from '../../registry/registry.js';
import { canSeeGrid, type HttpUser } from '../auth.js';
import { HttpError } from '../errors.js';
import type { Route } from '../router.js';

/** What the gateway broadcasts (SPEC §8 stream): incident changes and device status. */
export type StreamEvent =
  | { readonly type: 'incident'; readonly data: Incident }
  | { readonly type: 'device'; readonly data: { readonly deviceId: string; readonly online: boolean; readonly at: number; readonly reason?: string } };

interface Stored {
  readonly id: number;
  readonly type: string;
  /** Which grid may see it; undefined: an unknown device, shown to those who see every grid. */
  readonly grid: string | undefined;
  readonly json: string;
}

interface Client {
  readonly res: ServerResponse;
  readonly user: HttpUser;
}

export interface StreamHub {
  readonly route: Route;
  broadcast(event: StreamEvent): void;
  /** Ends every open stream (server stop). */
  closeAll(): void;
  clients(): number;
}

export interface StreamDeps {
  readonly registry: Pick<DeviceRegistry, 'get'>;
  /** Default 15 s (a comment line keeps proxies and the browser from timing the stream out). */
  readonly heartbeatMs?: number;
  /** Recent events kept for `Last-Event-ID` resumption. Default 1000. */
  readonly ringSize?: number;
}

function frame(e: Stored): string {
  return `id: ${e.id}\nevent: ${e.type}\ndata: ${e.json}\n\n`;
}

/**
 * Server-Sent Events (WHATWG HTML §9.2). Each event has an increasing id; a bounded ring of the
 * recent ones lets a client that reconnects with `Last-Event-ID` get what it missed. When the
 * ring no longer reaches back that far the client gets a `resync` event: refetch the lists.
 */
export function createStreamHub(deps: StreamDeps): StreamHub {
  const ringSize = deps.ringSize ?? 1000;
  const heartbeatMs = deps.heartbeatMs ?? 15_000;
  const ring: Stored[] = [];
  const clients = new Set<Client>();
  let nextId = 1;
  let timer: NodeJS.Timeout | undefined;

  const sees = (user: HttpUser, e: Stored): boolean => (e.grid === undefined ? canSeeGrid(user, '') : canSeeGrid(user, e.grid));

  function ensureTimer(): void {
    if (timer || clients.size === 0) return;
    timer = setInterval(() => {
      for (const c of clients) c.res.write(': heartbeat\n\n');
    }, heartbeatMs);
    timer.unref();
  }

  function drop(c: Client): void {
    clients.delete(c);
    if (clients.size === 0 && timer) {
      clearInterval(timer);
      timer = undefined;
    }
  }

  const route: Route = {
    method: 'GET',
    path: '/api/stream',
    auth: 'user',
    handle({ req, res, user }) {
      if (!user) throw new HttpError('HTTP_ERR_UNAUTHORIZED');
      const header = req.headers['last-event-id'];
      const lastId = typeof header === 'string' && /^\d{1,15}$/.test(header.trim()) ? Number(header.trim()) : undefined;
      res.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8', Connection: 'keep-alive', 'X-Accel-Buffering': 'no' });
      res.write('retry: 3000\n\n');
      if (lastId !== undefined) {
        const oldest = ring[0]?.id ?? nextId;
        if (lastId + 1 < oldest) res.write(`event: resync\ndata: {}\n\n`);
        for (const e of ring) if (e.id > lastId && sees(user, e)) res.write(frame(e));
      }
      const client: Client = { res, user };
      clients.add(client);
      res.on('close', () => drop(client));
      ensureTimer();
      return undefined;
    },
  };

  return {
    route,
    broadcast(event) {
      let stored: Stored;
      if (event.type === 'incident') {
        stored = { id: nextId++, type: 'incident', grid: event.data.grid, json: JSON.stringify(event.data) };
      } else {
        // Only these fields: a device record carries the resident, which a stream must not.
        const { deviceId, online, at, reason } = event.data;
        const grid = deps.registry.get(deviceId)?.place.grid;
        stored = { id: nextId++, type: 'device', grid, json: JSON.stringify({ deviceId, online, at, ...(reason !== undefined ? { reason } : {}) }) };
      }
      ring.push(stored);
      if (ring.length > ringSize) ring.splice(0, ring.length - ringSize);
      const text = frame(stored);
      for (const c of clients) if (sees(c.user, stored)) c.res.write(text);
    },
    closeAll() {
      for (const c of [...clients]) {
        c.res.end();
        drop(c);
      }
    },
    clients: () => clients.size,
  };
}
