import { existsSync } from 'node:fs';
import { readFile, realpath } from 'node:fs/promises';
import { extname, join, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { HttpError } from './errors.js';
import type { Route } from './router.js';

/**
 * The dashboard (SPEC §8 `GET /`): plain files from gateway/http/public, no build step. tsc does
 * not copy them to dist/, so the folder is found in the source tree from either place (like
 * rules/dsl/load.ts builtinRulesPath).
 */
export function publicDir(): string {
  const candidates = [new URL('./public/', import.meta.url), new URL('../../../gateway/http/public/', import.meta.url)];
  for (const url of candidates) {
    const path = fileURLToPath(url);
    if (existsSync(join(path, 'index.html'))) return path;
  }
  return fileURLToPath(candidates[0] as URL);
}

const TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
};

/** Scripts, styles and API calls from this origin only; no inline script, no framing. */
export const DASHBOARD_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/** One plain file name: no separators, no dot-segments, a known type. */
const FILE_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*\.(html|js|css|svg|png|ico)$/;

/** `GET /` (index.html) and `GET /ui/<file>`; anything else under /ui is 404. */
export function staticRoutes(dir: string = publicDir()): Route[] {
  async function serve(res: Parameters<Route['handle']>[0]['res'], name: string): Promise<undefined> {
    if (!FILE_NAME.test(name)) throw new HttpError('HTTP_ERR_NOT_FOUND');
    const type = TYPES[extname(name)];
    if (type === undefined) throw new HttpError('HTTP_ERR_NOT_FOUND');
    let body: Buffer;
    try {
      const root = await realpath(dir);
      const file = await realpath(join(root, name));
      // A symlink pointing out of the folder is not served either.
      if (!file.startsWith(root + sep)) throw new HttpError('HTTP_ERR_NOT_FOUND');
      body = await readFile(file);
    } catch (err) {
      if (err instanceof HttpError) throw err;
      throw new HttpError('HTTP_ERR_NOT_FOUND');
    }
    res.writeHead(200, { 'Content-Type': type, 'Content-Length': body.length, 'Content-Security-Policy': DASHBOARD_CSP, 'Cache-Control': 'no-cache' });
    res.end(body);
    return undefined;
  }
  return [
    { method: 'GET', path: '/', auth: 'none', handle: ({ res }) => serve(res, 'index.html') },
    { method: 'GET', path: '/ui/:file', auth: 'none', handle: ({ res, params }) => serve(res, params.file ?? '') },
  ];
}
