import type { IncomingMessage, ServerResponse } from 'node:http';
import { z as zod, type z } from 'zod';
import type { HttpUser } from './auth.js';
import { HttpError } from './errors.js';

/** What a handler gets. `user` is set on every route with `auth: 'user'`. */
export interface RouteContext {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly params: Readonly<Record<string, string>>;
  readonly query: URLSearchParams;
  readonly user: HttpUser | undefined;
  /** The JSON body, read up to the limit (413 beyond); `{}` when empty. */
  readonly body: () => Promise<unknown>;
}

/** A JSON reply; a handler that returns undefined wrote the response itself (SSE, metrics). */
export interface Reply {
  readonly status?: number;
  readonly body: unknown;
}

export interface Route {
  readonly method: 'GET' | 'POST';
  /** `/api/incidents/:id/:action`; static segments are matched exactly. */
  readonly path: string;
  /** `none`: /healthz; `metrics`: the metrics token when configured; `user`: a configured user. */
  readonly auth: 'none' | 'metrics' | 'user';
  handle(ctx: RouteContext): Promise<Reply | undefined> | Reply | undefined;
}

export interface Match {
  readonly route: Route;
  readonly params: Record<string, string>;
}

/**
 * A dozen routes need no framework: segments are compared in order of registration, so a static
 * route (`/api/devices/unregistered`) registered before a parameter route (`/api/devices/:id`) wins.
 * Returns undefined for an unknown path, throws HTTP_ERR_METHOD when the path exists for another method.
 */
export function createRouter(routes: readonly Route[]): { match(method: string, pathname: string): Match | undefined } {
  const compiled = routes.map((route) => ({ route, segments: route.path.split('/').filter(Boolean) }));
  return {
    match(method, pathname) {
      const parts = pathname.split('/').filter(Boolean);
      let pathMatched = false;
      for (const { route, segments } of compiled) {
        if (segments.length !== parts.length) continue;
        const params: Record<string, string> = {};
        let ok = true;
        for (let i = 0; i < segments.length && ok; i++) {
          const seg = segments[i] as string;
          const part = parts[i] as string;
          if (seg.startsWith(':')) {
            let value: string;
            try {
              value = decodeURIComponent(part);
            } catch {
              throw new HttpError('HTTP_ERR_BAD_REQUEST', 'malformed path');
            }
            params[seg.slice(1)] = value;
          } else if (seg !== part) ok = false;
        }
        if (!ok) continue;
        pathMatched = true;
        if (route.method === method) return { route, params };
      }
      if (pathMatched) throw new HttpError('HTTP_ERR_METHOD');
      return undefined;
    },
  };
}

const SAFE_SEGMENT = /^[A-Za-z0-9_]{1,32}$/;

/** `query.since`, `note`: zod's path, with anything that is not a plain identifier replaced (no reflected input). */
export function issuePath(prefix: string | undefined, issue: z.core.$ZodIssue): string {
  const segs: string[] = issue.path.map((p) => (typeof p === 'number' ? String(p) : typeof p === 'string' && SAFE_SEGMENT.test(p) ? p : '?'));
  if (issue.code === 'unrecognized_keys') {
    const key = issue.keys[0];
    segs.push(key !== undefined && SAFE_SEGMENT.test(key) ? key : '?');
  }
  return [prefix, ...segs].filter((s) => s !== undefined && s !== '').join('.');
}

/** Validates with zod; a failure is HTTP_ERR_BAD_REQUEST naming the first offending field. */
export function validate<S extends z.ZodType>(schema: S, value: unknown, prefix?: string): z.output<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  if (!issue) throw new HttpError('HTTP_ERR_BAD_REQUEST');
  const path = issuePath(prefix, issue);
  const what = issue.code === 'unrecognized_keys' ? 'unknown field' : issue.code === 'too_big' ? 'too long or too large' : 'invalid value';
  throw new HttpError('HTTP_ERR_BAD_REQUEST', `${path || 'body'}: ${what}`, path || 'body');
}

/** The query string as a plain object (a repeated key keeps its last value), for zod. */
export function queryObject(query: URLSearchParams): Record<string, string> {
  return Object.fromEntries(query.entries());
}

/** A time in a query string: epoch milliseconds, or an ISO 8601 date-time. */
export function timeParam() {
  return zod
    .string()
    .transform((s, ctx) => {
      const n = /^\d{1,15}$/.test(s) ? Number(s) : Date.parse(s);
      if (!Number.isFinite(n)) {
        ctx.addIssue({ code: 'custom', message: 'a time is epoch milliseconds or an ISO 8601 date-time' });
        return zod.NEVER;
      }
      return n;
    });
}
