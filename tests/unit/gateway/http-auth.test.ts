import { describe, expect, it } from 'vitest';
import { hashToken } from '../../../gateway/config/tokens.js';
import { authenticate, bearerToken, canSeeGrid, canSeeResident, metricsAllowed, seesAllGrids, type HttpUser } from '../../../gateway/http/auth.js';
import type { HttpError } from '../../../gateway/http/errors.js';
import { createRouter, validate } from '../../../gateway/http/router.js';
import { z } from 'zod';

const G1 = '110101013001002';
const G2 = '110101013001003';
const user = (name: string, role: HttpUser['role'], grids: string[] = []): HttpUser => ({ name, role, grids, tokenHash: hashToken(`${name}-token-0123456789abcdef`) });
const admin = user('ada', 'admin');
const dispatcher = user('dora', 'dispatcher');
const worker = user('wang', 'grid_worker', [G1]);
const USERS = [admin, dispatcher, worker];
const bearer = (u: HttpUser) => `Bearer ${u.name}-token-0123456789abcdef`;

describe('bearer tokens (SPEC §8)', () => {
  it('finds the user whose token hash matches', () => {
    expect(authenticate(bearer(admin), USERS)?.name).toBe('ada');
    expect(authenticate(bearer(worker), USERS)?.name).toBe('wang');
    expect(authenticate(`  ${bearer(dispatcher)}  `, USERS)?.name).toBe('dora');
  });

  it.each([
    ['no header', undefined],
    ['empty', ''],
    ['another scheme', 'Basic YWRhOnB3'],
    ['Bearer without a token', 'Bearer '],
    ['lower-case scheme', 'bearer ada-token-0123456789abcdef'],
    ['two tokens', 'Bearer a b'],
    ['a wrong token', 'Bearer not-anyones-token-000000'],
    ['the hash itself', `Bearer ${admin.tokenHash}`],
  ])('refuses %s', (_what, header) => {
    expect(authenticate(header, USERS)).toBeUndefined();
  });

  it('never matches a user whose stored hash is malformed', () => {
    expect(authenticate('Bearer x-token-0123456789abcdef', [{ ...user('x', 'admin'), tokenHash: 'sha256:zz' }])).toBeUndefined();
  });

  it('parses the token out of the header', () => {
    expect(bearerToken('Bearer abc')).toBe('abc');
    expect(bearerToken('Bearer')).toBeUndefined();
  });
});

describe('grids and roles (SPEC §8)', () => {
  it('admins and dispatchers see every grid, a grid worker only their own', () => {
    expect(seesAllGrids(admin)).toBe(true);
    expect(seesAllGrids(dispatcher)).toBe(true);
    expect(seesAllGrids(worker)).toBe(false);
    for (const u of [admin, dispatcher]) expect([canSeeGrid(u, G1), canSeeGrid(u, G2)]).toEqual([true, true]);
    expect([canSeeGrid(worker, G1), canSeeGrid(worker, G2)]).toEqual([true, false]);
    // An event without a grid (an unknown device) is only for those who see every grid.
    expect(canSeeGrid(worker, '')).toBe(false);
  });

  it('residents only to users whose grids include the device', () => {
    expect(canSeeResident(admin, G2)).toBe(true);
    expect(canSeeResident(worker, G1)).toBe(true);
    expect(canSeeResident(worker, G2)).toBe(false);
  });
});

describe('the metrics token', () => {
  const hash = hashToken('metrics-token-0123456789');
  it('is open when no token is configured', () => {
    expect(metricsAllowed(undefined, undefined)).toBe(true);
  });
  it('needs exactly the configured token otherwise', () => {
    expect(metricsAllowed('Bearer metrics-token-0123456789', hash)).toBe(true);
    expect(metricsAllowed(undefined, hash)).toBe(false);
    expect(metricsAllowed('Bearer metrics-token-0123456780', hash)).toBe(false);
  });
});

describe('router and validation', () => {
  const h = () => undefined;
  const router = createRouter([
    { method: 'GET', path: '/api/devices/unregistered', auth: 'user', handle: h },
    { method: 'GET', path: '/api/devices/:id', auth: 'user', handle: h },
    { method: 'POST', path: '/api/devices/:id/mute', auth: 'user', handle: h },
  ]);

  it('prefers the static route registered first, decodes parameters', () => {
    expect(router.match('GET', '/api/devices/unregistered')?.route.path).toBe('/api/devices/unregistered');
    expect(router.match('GET', '/api/devices/a%3Ab')?.params).toEqual({ id: 'a:b' });
    expect(router.match('GET', '/api/nothing')).toBeUndefined();
  });

  it('405 for a known path with another method, 400 for a malformed escape', () => {
    expect(() => router.match('DELETE', '/api/devices/x')).toThrow(expect.objectContaining({ code: 'HTTP_ERR_METHOD', status: 405 }));
    expect(() => router.match('GET', '/api/devices/%E0%A4%A')).toThrow(expect.objectContaining({ code: 'HTTP_ERR_BAD_REQUEST' }));
  });

  it('400 names the zod path, never echoing odd keys', () => {
    const schema = z.strictObject({ note: z.string().max(3) });
    const fail = (v: unknown): HttpError => {
      try {
        validate(schema, v, 'body');
      } catch (err) {
        return err as HttpError;
      }
      throw new Error('did not fail');
    };
    expect(fail({ note: 42 })).toMatchObject({ code: 'HTTP_ERR_BAD_REQUEST', status: 400, path: 'body.note' });
    expect(fail({ note: 'long' }).message).toBe('body.note: too long or too large');
    const odd = fail({ note: 'a', '<script>': 1 });
    expect(odd.path).toBe('body.?');
    expect(odd.message).not.toContain('<script>');
  });
});
