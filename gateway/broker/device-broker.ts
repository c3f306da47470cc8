import type { Server, Socket } from 'node:net';
import { Aedes, type AedesPublishPacket, type AuthenticateError, type Client, type PublishPacket, type Subscription } from 'aedes';
import { deviceTopics } from '../../devices/topics.js';
import { deviceMaySubscribe, devicePublishTarget, operatorMayReceive, operatorMaySubscribe, parseStatus } from './acl.js';
import { createPacketSizeGuard, installHandledShortCircuit, isWillOf } from './aedes-seams.js';
import { createAuthCache } from './auth-cache.js';
import { createAuthThrottle, type ThrottleEvent } from './auth-throttle.js';
import { createAuthenticator } from './authenticate.js';
import { createCounters, type RefusalReason } from './counters.js';
import { BrokerError } from './errors.js';
import { boundPort, closeServer, listenTcp, listenTls } from './listeners.js';
import { createLogThrottle } from '../../ingest/log-throttle.js';
import { createPresenceTracker } from './presence.js';
import { createRateLimiter } from './token-bucket.js';
import type { DeviceBroker, DeviceBrokerDeps, DeviceMessage, PublishLocalOptions } from './types.js';

type Done = (err?: Error | null) => void;

const DEFAULT_RATE = { perSecond: 20, burst: 100 } as const;
/** MQTT 3.1.1 §2.2.3: the largest Remaining Length there is. */
const MQTT_MAX_REMAINING_LENGTH = 268_435_455;
/** Device ids are up to 64 characters (DeviceRecordSchema); aedes' default of 23 applies to MQTT 3.1 clients only. */
const MAX_CLIENT_ID_LENGTH = 64;
/** Time allowed from the TCP connection to its CONNECT packet, ms. */
export const CONNECT_TIMEOUT_MS = 10_000;

/**
 * The embedded MQTT broker for devices and local operator tools (SPEC §3), on aedes.
 *
 * Per PUBLISH on `dev/{id}/up`, in order: size (too_large) → ACL → registry → rate mark →
 * onDeviceMessage → PUBACK (QoS 1: only after the handler resolved, i.e. after the commit;
 * DESIGN.md "store first"). Refused publishes are acknowledged by the normal QoS rules and
 * dropped (MQTT-3.3.5-2), never forwarded; see aedes-seams.ts for how.
 *
 * Per-client state is kept off the aedes Client: a few WeakSet memberships, one close listener,
 * and per device id a token bucket, an auth-cache entry and a presence slot.
 */
export function createDeviceBroker(deps: DeviceBrokerDeps): DeviceBroker {
  if (!Number.isInteger(deps.maxPayloadBytes) || deps.maxPayloadBytes < 1) {
    throw new BrokerError('BROKER_ERR_CONFIG', `maxPayloadBytes must be a positive integer, got ${deps.maxPayloadBytes}`);
  }
  const clock = deps.clock ?? Date.now;
  const log = deps.logger.child({ module: 'broker' });
  const maxPayload = deps.maxPayloadBytes;
  // Room for the topic and header of a payload up to twice the limit: a payload somewhat over the
  // limit is parsed, refused and counted (the connection stays); a packet beyond this closes it
  // before it is buffered.
  const maxRemainingLength = Math.min(2 * maxPayload + 1024, MQTT_MAX_REMAINING_LENGTH);

  const counters = createCounters();
  const limiter = createRateLimiter(deps.rateLimit ?? DEFAULT_RATE, clock);
  const throttle = createLogThrottle(clock);
  // Logged once per lockout; never the credentials (SPEC-NOTES "Credential brute force").
  const authThrottle = createAuthThrottle(deps.authThrottle ?? {}, clock, (e: ThrottleEvent) => {
    if (e.scope === 'ip') log.warn({ ip: e.ip, failures: e.failures, lockoutMs: e.lockoutMs }, 'client address locked out after failed CONNECTs');
    else log.warn({ deviceId: e.deviceId, failures: e.failures, verifyIntervalMs: e.verifyIntervalMs }, 'wrong secrets for this device id: its verifications are rate-limited');
  });
  const authenticate = createAuthenticator({
    devices: deps.devices,
    isMqttModel: (m) => deps.isMqttModel(m),
    operators: deps.operators,
    cache: createAuthCache(),
    throttle: authThrottle,
  });
  const presence = createPresenceTracker<Client>((deviceId, online, at, reason) => {
    // Bulkhead: a throwing consumer must not break the broker's close path.
    try {
      deps.onPresence(deviceId, online, at, reason);
    } catch (err) {
      log.error({ err, deviceId, online, reason }, 'onPresence threw');
    }
  }, clock);

  const operatorClients = new WeakSet<Client>();
  const deviceClients = new WeakSet<Client>();
  const readyClients = new WeakSet<Client>();
  /** Refused at CONNECT: counted and logged there; aedes' clientError for them would log each twice. */
  const refusedClients = new WeakSet<Client>();
  const sockets = new Set<Socket>();
  let connected = 0;
  /** Ready operator clients: the readers of the local republish. */
  let operatorsConnected = 0;

  let state: 'idle' | 'starting' | 'started' | 'stopping' | 'stopped' = 'idle';
  let starting: Promise<void> | undefined;
  let aedes: Aedes | undefined;
  let tcp: Server | undefined;
  let tls: Server | undefined;
  let markHandled: (packet: object) => void = () => undefined;
  let guardPacket: ((client: Client) => boolean) | undefined;
  let guardWarned = false;

  function refuse(reason: RefusalReason, key: string, fields: Record<string, unknown> = {}): void {
    counters.refuse(reason);
    const t = throttle.allow(`${reason}\0${key}`);
    if (t.ok) log.warn({ reason, id: key.slice(0, 64), ...fields, ...(t.suppressed ? { suppressed: t.suppressed } : {}) }, 'refused');
  }

  /** Positive acknowledgement by the normal QoS rules, no delivery (MQTT-3.3.5-2). */
  function drop(packet: PublishPacket, done: Done): void {
    packet.retain = false;
    markHandled(packet);
    done(null);
  }

  function callHandler(msg: DeviceMessage): Promise<void> {
    try {
      return deps.onDeviceMessage(msg);
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
  }

  // --- aedes hooks -------------------------------------------------------------------------

  function authenticateHook(
    client: Client,
    username: string | undefined,
    password: Buffer | undefined,
    done: (err: AuthenticateError | null, ok: boolean | null) => void,
  ): void {
    // Our listeners hand aedes net/tls sockets; a TLS socket's address is its TCP peer's.
    const ip = (client.conn as Partial<Socket>).remoteAddress;
    authenticate(client.id, username, password, ip).then(
      (outcome) => {
        if (outcome.ok) {
          if (outcome.role === 'operator') {
            operatorClients.add(client);
          } else {
            deviceClients.add(client);
            // A connection that died while scrypt ran must not become the device's session.
            if (!client.closed && !client.conn.destroyed) presence.claim(client.id, client);
          }
          done(null, true);
          return;
        }
        // A locked-out address was logged once when the lockout began; a line per attempt (keyed by
        // whatever username it sends) would let it flood the log instead.
        refusedClients.add(client);
        if (outcome.reason === 'auth_ip_locked') counters.refuse(outcome.reason);
        // An unknown username is not logged: it may be a secret typed into the wrong field.
        else refuse(outcome.reason, outcome.reason === 'auth_unknown_device' ? client.id : (username ?? ''), outcome.err === undefined ? {} : { err: outcome.err });
        const err = Object.assign(new Error(outcome.reason), { returnCode: outcome.returnCode }) as unknown as AuthenticateError;
        done(err, false);
      },
      // The authenticator catches its own errors; this is a last resort, not a code path.
      (err: unknown) => {
        log.error({ err }, 'authenticate failed');
        done(Object.assign(new Error('auth_error'), { returnCode: 3 }), false);
      },
    );
  }

  function authorizeWill(client: Client, packet: PublishPacket, done: Done): void {
    const id = client.id;
    const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
    if (operatorClients.has(client) || packet.topic !== deviceTopics.status(id) || parseStatus(payload) !== false) {
      refuse('will_refused', id, { topic: packet.topic });
      done(new Error('will refused'));
      return;
    }
    if (!presence.willAllowed(id, client)) {
      // Not a refusal of the device: its newer connection is alive, so "offline" would be a lie.
      counters.refuse('will_superseded');
      log.debug({ deviceId: id }, 'will of a taken-over session not published');
      done(new Error('will superseded'));
      return;
    }
    packet.retain = true; // SPEC §3: status is retained
    presence.will(id, client);
    done(null);
  }

  function authorizePublish(client: Client | null, packet: PublishPacket, done: Done): void {
    const receivedAt = clock();
    // aedes passes null only for wills of other broker instances (clusters); there are none.
    if (!client) {
      done(new Error('no client'));
      return;
    }
    if (isWillOf(client, packet)) {
      authorizeWill(client, packet, done);
      return;
    }
    const id = client.id;
    const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
    // Size first, before anything else looks at it (SPEC §3).
    if (payload.length > maxPayload) {
      refuse('too_large', id, { topic: packet.topic.slice(0, 128), bytes: payload.length });
      drop(packet, done);
      return;
    }
    const target = operatorClients.has(client) ? undefined : devicePublishTarget(id, packet.topic);
    if (target === undefined) {
      refuse('acl_publish', id, { topic: packet.topic.slice(0, 128) });
      drop(packet, done);
      return;
    }
    const device = deps.devices.get(id);
    if (!device) {
      refuse('unknown_device', id);
      drop(packet, done);
      return;
    }

    if (target === 'status') {
      const online = parseStatus(payload);
      if (online === undefined) {
        refuse('status_invalid', id, { bytes: payload.length });
        drop(packet, done);
        return;
      }
      counters.accept('status');
      presence.status(id, client, online);
      packet.retain = true; // SPEC §3: status is retained
      done(null);
      return;
    }

    const overLimit = !limiter.take(id);
    if (overLimit) counters.refuse('over_limit');
    const msg: DeviceMessage = { device, payload, qos: packet.qos === 0 ? 0 : 1, receivedAt, overLimit, dup: packet.dup };
    // Nobody may subscribe to dev/+/up: keep it out of aedes' routing (and its retained store).
    packet.retain = false;
    markHandled(packet);

    if (packet.qos === 0) {
      counters.accept('up_qos0');
      callHandler(msg).catch((err: unknown) => {
        counters.refuse('handler_error');
        const t = throttle.allow(`handler_error_qos0\0${id}`);
        if (t.ok) log.error({ err, deviceId: id, qos: 0 }, 'onDeviceMessage failed (QoS 0, best effort: lost)');
      });
      done(null);
      return;
    }

    // QoS 1 (and 2): the PUBACK (PUBREC) is written by aedes right after done(null), so done
    // waits for the handler, i.e. for the commit. A rejection: aedes 1.x closes the connection on
    // an authorizePublish error without acknowledging (lib/handlers/publish.js), and the device
    // resends the unacknowledged message when it reconnects (MQTT-4.4.0-1).
    callHandler(msg).then(
      () => {
        counters.accept('up_qos1');
        done(null);
      },
      (err: unknown) => {
        counters.refuse('handler_error');
        // Throttled: a store that cannot commit fails every message of every device.
        const t = throttle.allow(`handler_error\0${id}`);
        if (t.ok) log.error({ err, deviceId: id, qos: packet.qos }, 'onDeviceMessage failed: not acknowledged, closing the connection so that the device resends');
        done(err instanceof Error ? err : new Error(String(err)));
      },
    );
  }

  function authorizeSubscribe(client: Client, sub: Subscription, done: (err: Error | null, sub?: Subscription | null) => void): void {
    const allowed = operatorClients.has(client) ? operatorMaySubscribe(sub.topic) : deviceMaySubscribe(client.id, sub.topic);
    if (!allowed) {
      refuse('acl_subscribe', client.id, { topic: sub.topic.slice(0, 128) });
      done(null, null); // granted 0x80 (MQTT 3.1.1 §3.9.3)
      return;
    }
    if (sub.qos > 1) sub.qos = 1; // SPEC §3 speaks QoS 0 and 1
    done(null, sub);
  }

  function authorizeForward(client: Client, packet: AedesPublishPacket): AedesPublishPacket | null {
    if (operatorClients.has(client)) return operatorMayReceive(packet.topic) ? packet : null;
    return packet.topic === deviceTopics.down(client.id) ? packet : null;
  }

  // --- connections and sessions ----------------------------------------------------------

  function sessionEnded(client: Client): void {
    if (readyClients.delete(client)) {
      connected--;
      if (operatorClients.has(client)) operatorsConnected--;
    }
    if (deviceClients.has(client)) presence.ended(client.id, client);
  }

  function onSocket(socket: Socket): void {
    // 'starting': the TCP listener is up while the TLS one is still being set up.
    if ((state !== 'started' && state !== 'starting') || !aedes) {
      socket.destroy();
      return;
    }
    sockets.add(socket);
    const client = aedes.handle(socket);
    if (guardPacket && !guardPacket(client) && !guardWarned) {
      guardWarned = true;
      log.warn('cannot install the packet size guard on this aedes version: only the payload check applies');
    }
    socket.once('close', () => {
      sockets.delete(socket);
      sessionEnded(client);
    });
  }

  function wire(broker: Aedes): void {
    broker.on('clientReady', (client) => {
      readyClients.add(client);
      connected++;
      if (operatorClients.has(client)) operatorsConnected++;
      if (deviceClients.has(client)) presence.ready(client.id, client);
    });
    broker.on('clientDisconnect', sessionEnded);
    broker.on('clientError', (client, err) => {
      if (refusedClients.has(client)) return;
      const t = throttle.allow(`client_error\0${client.id}`);
      if (t.ok) log.info({ id: client.id, err: err.message }, 'client connection closed on error');
    });
    broker.on('connectionError', (_client, err) => {
      const t = throttle.allow(`connection_error\0${err.message}`);
      if (t.ok) log.debug({ err: err.message }, 'connection error before CONNECT completed');
    });
    broker.on('keepaliveTimeout', (client) => log.debug({ id: client.id }, 'keepalive timeout'));
    // aedes emits 'error' for persistence failures; without a listener they would crash the process.
    (broker as unknown as NodeJS.EventEmitter).on('error', (err: Error) => log.error({ err }, 'aedes error'));
  }

  async function doStart(): Promise<void> {
    const broker = await Aedes.createBroker({
      id: 'gridedge',
      authenticate: authenticateHook,
      authorizePublish,
      authorizeSubscribe,
      authorizeForward,
      maxClientsIdLength: MAX_CLIENT_ID_LENGTH,
      // A connection that sends no CONNECT in this time is closed (aedes' default is 30 s): half
      // packets from a slowloris hold a socket a third as long. Authentication runs after it.
      connectTimeout: CONNECT_TIMEOUT_MS,
    });
    aedes = broker;
    markHandled = installHandledShortCircuit(broker);
    guardPacket = createPacketSizeGuard(maxRemainingLength, (client, length) => {
      refuse('packet_too_large', client?.id ?? '', { bytes: length });
    });
    wire(broker);
    const onServerError = (err: Error): void => log.error({ err }, 'listener error');
    try {
      tcp = await listenTcp(deps.listen.host, deps.listen.port, onSocket);
      tcp.on('error', onServerError);
      if (deps.tls) {
        tls = await listenTls(deps.tls, deps.listen.host, onSocket, (err) => {
          const t = throttle.allow(`tls\0${err.message}`);
          if (t.ok) log.info({ err: err.message }, 'TLS handshake failed');
        });
        tls.on('error', onServerError);
      }
    } catch (err) {
      await teardown();
      state = 'stopped';
      throw err;
    }
    state = 'started';
    log.info({ tcp: boundPort(tcp), tls: boundPort(tls), maxPayloadBytes: maxPayload }, 'MQTT broker listening');
  }

  async function teardown(): Promise<void> {
    presence.mute();
    const closing = [tcp, tls].filter((s): s is Server => s !== undefined).map(closeServer);
    const broker = aedes;
    if (broker) await new Promise<void>((resolve) => broker.close(() => resolve()));
    // Connections that never completed CONNECT are not aedes clients: close them too.
    for (const s of sockets) s.destroy();
    sockets.clear();
    await Promise.all(closing);
  }

  /** Always a promise: a caller's await sees a BROKER_ERR_STATE as a rejection, never a throw. */
  function publish(packet: PublishPacket): Promise<void> {
    const broker = aedes;
    if (state !== 'started' || !broker) return Promise.reject(new BrokerError('BROKER_ERR_STATE', `broker is ${state}`));
    return new Promise((resolve, reject) => {
      broker.publish(packet, (err) => (err ? reject(new BrokerError('BROKER_ERR_PUBLISH', err.message, { cause: err })) : resolve()));
    });
  }

  return {
    start() {
      if (state !== 'idle') return Promise.reject(new BrokerError('BROKER_ERR_STATE', `start() on a broker that is ${state}`));
      state = 'starting';
      starting = doStart();
      return starting;
    },

    async stop() {
      if (state === 'starting') await starting?.catch(() => undefined);
      if (state !== 'started') return;
      state = 'stopping';
      await teardown();
      state = 'stopped';
      log.info('MQTT broker stopped');
    },

    publishDown(deviceId, payload) {
      return publish({ cmd: 'publish', topic: deviceTopics.down(deviceId), payload, qos: 1, retain: false, dup: false });
    },

    publishLocal(topic, payload, opts: PublishLocalOptions = {}) {
      if (!operatorMayReceive(topic)) {
        return Promise.reject(new BrokerError('BROKER_ERR_PUBLISH', `publishLocal is for the local republish topics, not ${topic}`));
      }
      return publish({
        cmd: 'publish',
        topic,
        payload: Buffer.isBuffer(payload) ? payload : Buffer.from(payload),
        qos: opts.qos ?? 0,
        retain: opts.retain ?? false,
        dup: false,
      });
    },

    stats() {
      return { ...counters.snapshot(connected), authThrottle: authThrottle.stats() };
    },

    clients() {
      return connected;
    },

    hasLocalReaders() {
      return operatorsConnected > 0;
    },

    ports() {
      const t = boundPort(tcp);
      if (t === undefined) throw new BrokerError('BROKER_ERR_STATE', 'ports() before start()');
      const s = boundPort(tls);
      return s === undefined ? { tcp: t } : { tcp: t, tls: s };
    },
  };
}
