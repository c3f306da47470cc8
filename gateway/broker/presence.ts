import type { PresenceReason } from './types.js';

/** What the tracker needs of a connection: aedes' Client has `closed` (public, lib/client.js). */
export interface SessionLike {
  readonly closed: boolean;
}

export interface PresenceTracker<S extends SessionLike> {
  /** A connection authenticated as this device: it is now the device's session (MQTT-3.1.4-2: the newest wins). */
  claim(deviceId: string, session: S): void;
  /** The session is established (CONNACK sent). */
  ready(deviceId: string, session: S): void;
  /**
   * aedes is about to publish this session's will. False when another, live connection of the
   * same device has taken over: the old session's will must not announce the device offline
   * while the new one is connected.
   */
  willAllowed(deviceId: string, session: S): boolean;
  /** The will was published (allowed): the device is offline, reason `will`. */
  will(deviceId: string, session: S): void;
  /** The device said so itself on `dev/{id}/status`. Ignored from a session that was taken over. */
  status(deviceId: string, session: S, online: boolean): void;
  /** The connection is gone (any path; idempotent). */
  ended(deviceId: string, session: S): void;
  isOnline(deviceId: string): boolean;
  /** While stopping, nothing is announced: the gateway is going away, not the devices. */
  mute(): void;
}

/**
 * Device presence from connection events, wills and status messages, announced on transitions
 * only. State: the newest authenticated session per device (`owner`) and the set of devices last
 * announced online — two small maps however many connections come and go.
 *
 * Takeover (a device reconnects while its old TCP connection is still open, e.g. after a NAT
 * rebinding on 4G): aedes closes the old session when the new one registers, and the old one's
 * close would publish its will and end its connection after the new one has authenticated. Both
 * are recognised because `owner` already points at the new session.
 */
export function createPresenceTracker<S extends SessionLike>(
  announce: (deviceId: string, online: boolean, at: number, reason: PresenceReason) => void,
  clock: () => number,
): PresenceTracker<S> {
  const owner = new Map<string, S>();
  const online = new Set<string>();
  let muted = false;

  const set = (deviceId: string, isOnline: boolean, reason: PresenceReason): void => {
    if (muted || online.has(deviceId) === isOnline) return;
    if (isOnline) online.add(deviceId);
    else online.delete(deviceId);
    announce(deviceId, isOnline, clock(), reason);
  };

  /** Another connection of this device is alive and newer than `session`. */
  const supersededBy = (deviceId: string, session: S): boolean => {
    const o = owner.get(deviceId);
    return o !== undefined && o !== session && !o.closed;
  };

  return {
    claim(deviceId, session) {
      owner.set(deviceId, session);
    },
    ready(deviceId, session) {
      if (owner.get(deviceId) === session && !session.closed) set(deviceId, true, 'connect');
    },
    willAllowed(deviceId, session) {
      return !supersededBy(deviceId, session);
    },
    will(deviceId, session) {
      if (owner.get(deviceId) === session) owner.delete(deviceId);
      set(deviceId, false, 'will');
    },
    status(deviceId, session, isOnline) {
      if (owner.get(deviceId) === session && !session.closed) set(deviceId, isOnline, 'status');
    },
    ended(deviceId, session) {
      const o = owner.get(deviceId);
      if (o === session || (o !== undefined && o.closed)) {
        // Ours, or a newer claimant that died before its own end was seen: nobody is connected.
        owner.delete(deviceId);
        set(deviceId, false, 'disconnect');
      }
      // Otherwise: another live session took over (the device is still online), or nobody owns
      // the id any more (its will or a newer session's end already announced it offline).
    },
    isOnline(deviceId) {
      return online.has(deviceId);
    },
    mute() {
      muted = true;
    },
  };
}
