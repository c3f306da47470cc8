import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';

/**
 * Device secrets are stored only as scrypt hashes (SPEC §3, §11), in one self-describing string:
 * `scrypt$<N>$<r>$<p>$<salt base64>$<hash base64>`, so parameters can be raised later without
 * breaking stored hashes.
 */
// N = 2^12: ~15 ms a check on this 2-core box. 2^14 cost ~65–85 ms, so after a restart 10k devices
// reconnecting would queue minutes of scrypt on the thread pool, an SOS pager's CONNECT among them.
// The broker caches successful checks per process; the cost guards weak secrets in a stolen file.
const DEFAULTS = { N: 4096, r: 8, p: 1 } as const;
const KEY_LENGTH = 32;

function scryptAsync(secret: string, salt: Buffer, keylen: number, opts: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(secret, salt, keylen, opts, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

export function isSecretHash(value: string): boolean {
  return parseHash(value) !== undefined;
}

export async function hashSecret(secret: string, params: { N: number; r: number; p: number } = DEFAULTS): Promise<string> {
  const salt = randomBytes(16);
  const key = await scryptAsync(secret, salt, KEY_LENGTH, { ...params, maxmem: 64 * 1024 * 1024 });
  return `scrypt$${params.N}$${params.r}$${params.p}$${salt.toString('base64')}$${key.toString('base64')}`;
}

interface ParsedHash {
  N: number;
  r: number;
  p: number;
  salt: Buffer;
  key: Buffer;
}

function parseHash(value: string): ParsedHash | undefined {
  const m = /^scrypt\$(\d+)\$(\d+)\$(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$/.exec(value);
  if (!m) return undefined;
  const [N, r, p] = [Number(m[1]), Number(m[2]), Number(m[3])];
  // N must be a power of two above 1 for scrypt; refuse anything else rather than throw later.
  if (N < 2 || (N & (N - 1)) !== 0 || r < 1 || p < 1) return undefined;
  const key = Buffer.from(m[5] as string, 'base64');
  if (key.length < 16) return undefined;
  return { N, r, p, salt: Buffer.from(m[4] as string, 'base64'), key };
}

/** Constant-time check of a presented secret against a stored hash; a malformed hash never matches. */
export async function verifySecret(secret: string, hash: string): Promise<boolean> {
  const parsed = parseHash(hash);
  if (!parsed) return false;
  const key = await scryptAsync(secret, parsed.salt, parsed.key.length, {
    N: parsed.N,
    r: parsed.r,
    p: parsed.p,
    maxmem: 256 * parsed.N * parsed.r + 1024 * 1024,
  });
  return timingSafeEqual(key, parsed.key);
}
