import type { UserConfig } from '../config/schema.js';
import { tokenMatches } from '../config/tokens.js';

/** What the API needs of a configured user (SPEC §8). */
export type HttpUser = Pick<UserConfig, 'name' | 'role' | 'grids' | 'tokenHash'>;

const BEARER = /^Bearer ([^\s]+)$/;

/** The token of an `Authorization: Bearer <token>` header, or undefined when malformed or absent. */
export function bearerToken(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  return BEARER.exec(header.trim())?.[1];
}

/**
 * The user whose token hash matches, compared in constant time. Every user is checked (no early
 * exit), so the response time does not tell how far down the list the match was.
 */
export function authenticate(header: string | undefined, users: readonly HttpUser[]): HttpUser | undefined {
  const token = bearerToken(header);
  if (token === undefined) return undefined;
  let found: HttpUser | undefined;
  for (const u of users) {
    if (tokenMatches(token, u.tokenHash) && found === undefined) found = u;
  }
  return found;
}

/** SPEC §8: admins and dispatchers see every grid; a grid worker only their own. */
export function seesAllGrids(user: Pick<HttpUser, 'role'>): boolean {
  return user.role === 'admin' || user.role === 'dispatcher';
}

export function canSeeGrid(user: Pick<HttpUser, 'role' | 'grids'>, grid: string): boolean {
  return seesAllGrids(user) || user.grids.includes(grid);
}

/** Residents' personal data only to users whose grids include the device (SPEC §8). */
export function canSeeResident(user: Pick<HttpUser, 'role' | 'grids'>, deviceGrid: string): boolean {
  return canSeeGrid(user, deviceGrid);
}

/** `GET /metrics`: open unless a metrics token is configured, then only that token. */
export function metricsAllowed(header: string | undefined, metricsTokenHash: string | undefined): boolean {
  if (metricsTokenHash === undefined) return true;
  const token = bearerToken(header);
  return token !== undefined && tokenMatches(token, metricsTokenHash);
}
