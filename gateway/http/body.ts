import type { IncomingMessage } from 'node:http';
import { HttpError } from './errors.js';

/** `application/json` or a `+json` type (RFC 6839), with no charset or UTF-8 (RFC 8259 §8.1: JSON is UTF-8). */
const JSON_MEDIA_TYPE = /^application\/(?:[\w.-]+\+)?json$/;

const utf8 = new TextDecoder('utf-8', { fatal: true });

function isJsonContentType(header: string | undefined): boolean {
  if (header === undefined) return false;
  const [type, ...params] = header.split(';').map((p) => p.trim().toLowerCase());
  if (!JSON_MEDIA_TYPE.test(type ?? '')) return false;
  return params.every((p) => !p.startsWith('charset=') || p === 'charset=utf-8' || p === 'charset="utf-8"');
}

/**
 * A request's JSON body, read up to `limit` bytes: `{}` when empty or blank. Refused with the catalogue's
 * errors, never decoded loosely: over the limit 413 (before reading when Content-Length says so),
 * a body that is not `application/json` 415, bytes that are not UTF-8 or not JSON 400.
 */
export function readJsonBody(req: IncomingMessage, limit: number): Promise<unknown> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) return Promise.reject(new HttpError('HTTP_ERR_TOO_LARGE'));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    req.on('data', (chunk: Buffer) => {
      if (failed) return;
      size += chunk.length;
      if (size > limit) {
        failed = true;
        reject(new HttpError('HTTP_ERR_TOO_LARGE'));
        return;
      }
      chunks.push(chunk);
    });
    req.on('error', (err) => {
      if (!failed) reject(err);
    });
    req.on('end', () => {
      if (failed) return;
      const bytes = Buffer.concat(chunks);
      if (bytes.every((b) => b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d)) return resolve({});
      if (!isJsonContentType(req.headers['content-type'])) return reject(new HttpError('HTTP_ERR_MEDIA_TYPE'));
      let text: string;
      try {
        text = utf8.decode(bytes);
      } catch {
        return reject(new HttpError('HTTP_ERR_BAD_REQUEST', 'body: not UTF-8', 'body'));
      }
      try {
        resolve(JSON.parse(text));
      } catch {
        reject(new HttpError('HTTP_ERR_BAD_REQUEST', 'body: not JSON', 'body'));
      }
    });
  });
}
