import { createHash, timingSafeEqual } from 'node:crypto';

/**
 * HTTP bearer tokens (SPEC §8) are kept only as `sha256:<hex>` after the config is loaded, so the
 * frozen config — which is passed everywhere and may end up in a debug dump — never holds one.
 * A plain SHA-256 is enough here: tokens are long random strings, not passwords (the config
 * schema refuses short ones), so there is nothing for a salt or a slow hash to protect.
 */
export const TOKEN_HASH = /^sha256:[0-9a-f]{64}$/;

export function hashToken(token: string): string {
  return `sha256:${createHash('sha256').update(token, 'utf8').digest('hex')}`;
}

/** Constant-time check of a presented bearer token against a stored `sha256:` hash. */
export function tokenMatches(presented: string, tokenHash: string): boolean {
  if (!TOKEN_HASH.test(tokenHash)) return false;
  const a = Buffer.from(hashToken(presented).slice(7), 'hex');
  const b = Buffer.from(tokenHash.slice(7), 'hex');
  return timingSafeEqual(a, b);
}
