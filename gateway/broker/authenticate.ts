import { createHash, timingSafeEqual } from 'node:crypto';
import type { AuthCache } from './auth-cache.js';
import type { AuthThrottle } from './auth-throttle.js';
import type { RefusalReason } from './counters.js';
import { CONNACK } from './errors.js';
import type { DeviceDirectory, OperatorCredentials } from './types.js';

export type AuthOutcome =
  | { readonly ok: true; readonly role: 'device' | 'operator'; readonly cached?: boolean }
  | { readonly ok: false; readonly returnCode: 3 | 4 | 5; readonly reason: RefusalReason; readonly err?: unknown };

export interface AuthenticatorDeps {
  readonly devices: DeviceDirectory;
  isMqttModel(modelId: string): boolean;
  readonly operators: readonly OperatorCredentials[];
  readonly cache: AuthCache;
  /** Credential brute force (auth-throttle.ts); omitted: none. */
  readonly throttle?: AuthThrottle;
}

/** `ip`: the client's address, for the per-IP lockout (undefined: not tracked). */
export type Authenticator = (clientId: string, username: string | undefined, password: Buffer | undefined, ip?: string) => Promise<AuthOutcome>;

const sha256 = (b: Buffer | string): Buffer => createHash('sha256').update(b).digest();

/**
 * CONNECT credentials → who this is (SPEC §3): client id = username = device id, password = the
 * device's secret (scrypt-verified, then cached as an HMAC), or one of the configured operators.
 * Cheap checks come first so that a wrong client id or an unknown device costs no scrypt.
 */
export function createAuthenticator(deps: AuthenticatorDeps): Authenticator {
  // Only digests are kept: equal lengths for timingSafeEqual, and the compare leaks no length.
  const operators = new Map(deps.operators.map((o) => [o.username, sha256(o.password)]));
  const refuse = (returnCode: 3 | 4 | 5, reason: RefusalReason, err?: unknown): AuthOutcome =>
    err === undefined ? { ok: false, returnCode, reason } : { ok: false, returnCode, reason, err };

  const throttle = deps.throttle;
  return async (clientId, username, password, ip) => {
    // A locked-out address is refused unread: no lookup, no scrypt (SPEC-NOTES "Credential brute force").
    if (ip !== undefined && throttle?.ipLocked(ip)) return { ok: false, returnCode: CONNACK.NOT_AUTHORIZED, reason: 'auth_ip_locked' };
    const outcome = await check(clientId, username, password);
    if (!outcome.ok && outcome.reason !== 'auth_error') {
      const wrongSecret = outcome.reason === 'auth_bad_secret' && username !== undefined && deps.devices.get(username) !== undefined;
      throttle?.failed(ip, wrongSecret ? username : undefined);
    }
    return outcome;
  };

  async function check(clientId: string, username: string | undefined, password: Buffer | undefined): Promise<AuthOutcome> {
    if (username === undefined || username === '') return refuse(CONNACK.NOT_AUTHORIZED, 'auth_unknown_device');

    const operator = operators.get(username);
    if (operator) {
      if (!password || !timingSafeEqual(sha256(password), operator)) return refuse(CONNACK.BAD_USERNAME_OR_PASSWORD, 'auth_operator_bad_password');
      // A client id that is a device id would take that device's session over (MQTT-3.1.4-2).
      if (deps.devices.get(clientId)) return refuse(CONNACK.NOT_AUTHORIZED, 'auth_operator_client_id');
      return { ok: true, role: 'operator' };
    }

    const device = deps.devices.get(username);
    if (!device) return refuse(CONNACK.NOT_AUTHORIZED, 'auth_unknown_device');
    if (clientId !== username) return refuse(CONNACK.NOT_AUTHORIZED, 'auth_client_id_mismatch');
    if (!deps.isMqttModel(device.model)) return refuse(CONNACK.NOT_AUTHORIZED, 'auth_not_mqtt_model');
    const hash = device.secretHash;
    if (!hash) return refuse(CONNACK.NOT_AUTHORIZED, 'auth_no_secret');
    if (!password || password.length === 0) return refuse(CONNACK.BAD_USERNAME_OR_PASSWORD, 'auth_bad_secret');

    if (deps.cache.check(device.id, hash, password)) return { ok: true, role: 'device', cached: true };
    // After the cache: a device that connected before is never slowed by an attack on its id.
    if (throttle && !throttle.mayVerify(device.id)) return refuse(CONNACK.NOT_AUTHORIZED, 'auth_device_throttled');
    let verified: boolean;
    try {
      verified = await deps.devices.verify(device.id, password.toString('utf8'));
    } catch (err) {
      return refuse(CONNACK.SERVER_UNAVAILABLE, 'auth_error', err);
    }
    if (!verified) return refuse(CONNACK.BAD_USERNAME_OR_PASSWORD, 'auth_bad_secret');
    // Remember it under the hash read before verifying: if the registry changed the hash
    // meanwhile, the entry simply never matches.
    deps.cache.remember(device.id, hash, password);
    return { ok: true, role: 'device', cached: false };
  }
}
