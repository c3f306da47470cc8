import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { connect, Store, type IClientOptions, type IPublishPacket, type MqttClient } from 'mqtt';
import { uplinkTopics } from '../../devices/topics.js';
import { createLogThrottle } from '../../ingest/log-throttle.js';
import { backoffDelay, type BackoffOptions } from '../../ingest/sinks/backoff.js';
import { systemClock, type SinkClock } from '../../ingest/sinks/clock.js';
import type { IncidentOutbox, OutboxRow } from '../../rules/incidents/index.js';
import { parseCommand, type UplinkCommand } from './commands.js';
import { UplinkError } from './errors.js';
import { createNullStore } from './null-store.js';

/**
 * The MQTT client to the city platform (SPEC §7, DESIGN.md "What scales out").
 *
 * Delivery: the durable outbox (rules/incidents/store.ts) is the only queue. Rows are published in
 * outbox order, QoS 1, and the cursor moves only over rows whose PUBACK came back, so a crash, an
 * outage or a restart just resends from the cursor: at least once, never lost, never reordered
 * per incident. A small window is in flight, with at most one row per incident, and PUBACKs come
 * back in order (MQTT-4.6.0-2), so after a reconnect each incident's stream is its versions in
 * order with at most the last one repeated; `version` lets the city side drop the repeat.
 *
 * mqtt.js is used as a connection, not as a queue:
 * - `outgoingStore` keeps nothing (null-store.ts): no second in-memory copy replayed behind our back;
 * - `queueQoSZero: false`: nothing is queued while offline (we publish only when connected);
 * - `reconnectPeriod: 0`: reconnects are ours, with exponential backoff and jitter, so that a city
 *   broker coming back is not hit by every gateway of the district in the same second;
 * - `clean: false` and a stable client id: the broker keeps our cmd subscription and queues QoS 1
 *   commands while we are away; `resubscribe: false` because we subscribe on every connect anyway
 *   (idempotent, and right when the broker lost the session);
 * - the socket gets `setNoDelay(true)`: Nagle adds ~10 ms a publish (DESIGN.md).
 */

/** The part of a pino logger the uplink uses. */
export interface UplinkLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export type UplinkClock = SinkClock;

export interface UplinkTlsOptions {
  /** PEM file paths (config `uplink.tls`). */
  readonly ca?: string;
  readonly cert?: string;
  readonly key?: string;
  readonly rejectUnauthorized?: boolean;
}

export interface UplinkDeps {
  /** `mqtt://`, `mqtts://`, `tcp://`, `ssl://`, `ws://`, `wss://` (config `uplink.url`). */
  readonly url: string;
  /** Topic prefix, e.g. `city/110101013`. */
  readonly prefix: string;
  readonly gatewayId: string;
  /** Default: the gateway id. Two gateways with one client id would take each other's session. */
  readonly clientId?: string;
  readonly username?: string;
  readonly password?: string;
  readonly tls?: UplinkTlsOptions;
  readonly outbox: IncidentOutbox;
  /** A validated command for an incident id of this gateway. A throw is counted by its `code`. */
  readonly onCommand: (cmd: UplinkCommand) => void | Promise<void>;
  /** The upstream broker PUBACKed this row (metrics: alarm-to-uplink latency). Must not throw. */
  readonly onDelivered?: (row: OutboxRow, at: number) => void;
  readonly logger: UplinkLogger;
  readonly clock?: UplinkClock;
  /** Rows in flight at once (never two of one incident). Default 16; 1 is strictly one at a time. */
  readonly maxInFlight?: number;
  /** Reconnect delays. Default 1 s doubling to 30 s, ±20 %. */
  readonly backoff?: Partial<BackoffOptions>;
  /** Seconds. Default 30. */
  readonly keepalive?: number;
  /** Default 10 s. */
  readonly connectTimeoutMs?: number;
  /** A safety net re-reading the outbox in case a notification was missed. Default 5 s. */
  readonly pollMs?: number;
  /**
   * A row in flight this long without its PUBACK on a connection that is otherwise alive (an
   * overloaded cluster node) makes the uplink drop the connection and resend. Default 30 s.
   */
  readonly ackTimeoutMs?: number;
  /**
   * PUBACKed rows are written to the durable cursor at most this often (one fsync per flush, not
   * per row). A crash loses at most this much cursor progress: those rows are sent again, same
   * version, same content. Default 50 ms.
   */
  readonly cursorFlushMs?: number;
  /** How long `stop()` waits for rows in flight and the `offline` publish. Default 2 s. */
  readonly stopTimeoutMs?: number;
  readonly random?: () => number;
}

export interface UplinkHealth {
  readonly connected: boolean;
  /** When the connection was last established or lost (clock ms); undefined before the first. */
  readonly since: number | undefined;
  readonly outboxDepth: number;
  /** Age of the oldest row not yet PUBACKed, ms; null when the outbox is empty. */
  readonly oldestUnsentAgeMs: number | null;
  readonly cursor: number;
  readonly inFlight: number;
  /** Outbox rows PUBACKed since start. */
  readonly published: number;
  readonly reconnects: number;
  readonly lastError: { readonly message: string; readonly at: number } | undefined;
  readonly commands: { readonly accepted: number; readonly rejected: Readonly<Record<string, number>> };
  /** Nagle is off on the current socket. */
  readonly noDelay: boolean;
}

export interface Uplink {
  /** Starts connecting (does not wait for the upstream: the gateway runs without it). */
  start(): void;
  /** Drains what is in flight (bounded), announces `offline` (retained), disconnects. */
  stop(): Promise<void>;
  health(): UplinkHealth;
  /** New outbox rows may be there (the store also tells us itself). */
  notify(): void;
}

const DEFAULT_BACKOFF: BackoffOptions = { initialMs: 1_000, maxMs: 30_000, jitter: 0.2 };
const READ_AHEAD = 64;
/** A connection that lived this long resets the reconnect backoff; one dropped at once does not. */
const STABLE_MS = 10_000;
const ONLINE = 'online';
const OFFLINE = 'offline';

interface InFlight {
  readonly seq: number;
  readonly incidentId: string;
  readonly row: OutboxRow;
  /** Wall-clock ms; moved to now when the clock is found to have stepped back past it. */
  sentAt: number;
  done: boolean;
}

export function createUplink(deps: UplinkDeps): Uplink {
  const clock = deps.clock ?? systemClock;
  const random = deps.random ?? Math.random;
  const { outbox, logger, gatewayId, prefix } = deps;
  const maxInFlight = deps.maxInFlight ?? 16;
  if (!Number.isInteger(maxInFlight) || maxInFlight < 1 || maxInFlight > 1_000) {
    throw new UplinkError('UPLINK_ERR_CONFIG', `maxInFlight must be an integer in 1..1000, got ${String(maxInFlight)}`);
  }
  const backoff: BackoffOptions = { ...DEFAULT_BACKOFF, ...deps.backoff };
  if (!(backoff.initialMs > 0) || !(backoff.maxMs >= backoff.initialMs) || !(backoff.jitter >= 0 && backoff.jitter <= 1)) {
    throw new UplinkError('UPLINK_ERR_CONFIG', `backoff needs 0 < initialMs <= maxMs and jitter in [0, 1], got ${JSON.stringify(backoff)}`);
  }
  const pollMs = deps.pollMs ?? 5_000;
  const ackTimeoutMs = deps.ackTimeoutMs ?? 30_000;
  const cursorFlushMs = deps.cursorFlushMs ?? 50;
  const stopTimeoutMs = deps.stopTimeoutMs ?? 2_000;
  const statusTopic = uplinkTopics.gatewayStatus(prefix, gatewayId);
  const cmdTopic = uplinkTopics.gatewayCmd(prefix, gatewayId);
  const throttle = createLogThrottle(() => clock.now());

  let client: MqttClient | undefined;
  let started = false;
  let stopping = false;
  let connected = false;
  let since: number | undefined;
  let noDelay = false;
  /** Bumped on every connection loss: PUBACK callbacks of an older connection are ignored. */
  let generation = 0;
  let attempt = 0;
  let reconnects = 0;
  let published = 0;
  let lastError: { message: string; at: number } | undefined;
  let accepted = 0;
  const rejected: Record<string, number> = {};

  /** Highest seq with every row up to it PUBACKed (memory); `durable` is what the store has. */
  let acked = 0;
  let durable = 0;
  let sentUpTo = 0;
  let buffer: OutboxRow[] = [];
  const inFlight: InFlight[] = [];
  const inFlightIncidents = new Set<string>();

  let reconnectTimer: unknown;
  let pollTimer: unknown;
  let pumpQueued = false;
  let flushTimer: unknown;
  let unsubscribe: (() => void) | undefined;
  let drained: (() => void) | undefined;

  const fail = (err: unknown, what: string): void => {
    const message = err instanceof Error ? err.message : String(err);
    lastError = { message: `${what}: ${message}`, at: clock.now() };
    const gate = throttle.allow(what);
    if (gate.ok) logger.warn({ err, suppressed: gate.suppressed }, `uplink: ${what}`);
  };

  // ---- publishing ------------------------------------------------------------------------

  const flushAcks = (): void => {
    if (flushTimer !== undefined) clock.clearTimeout(flushTimer);
    flushTimer = undefined;
    if (acked <= durable) return;
    try {
      outbox.ack(acked);
      durable = acked;
    } catch (err) {
      // The rows were delivered; a cursor that stays behind only means they are sent again.
      fail(err, 'cannot store the outbox cursor');
    }
  };
  // PUBACKs are persisted in groups: with synchronous=FULL each commit is an fsync (1–3 ms here).
  const queueFlush = (): void => {
    if (flushTimer !== undefined) return;
    flushTimer = clock.setTimeout(flushAcks, cursorFlushMs);
  };

  const onPuback = (gen: number, entry: InFlight, err: Error | undefined): void => {
    if (gen !== generation) return;
    if (err) {
      // MQTT 3.1.1 has no negative PUBACK; this is the connection going away under us. Drop it
      // and resend from the cursor on a fresh one, so the order is kept.
      fail(err, 'publish failed');
      (client?.stream as Partial<Socket> | undefined)?.destroy?.();
      return;
    }
    entry.done = true;
    published++;
    try {
      deps.onDelivered?.(entry.row, clock.now());
    } catch (e) {
      logger.warn({ err: e }, 'uplink delivery listener failed');
    }
    while (inFlight[0]?.done) {
      const head = inFlight.shift() as InFlight;
      acked = head.seq;
      inFlightIncidents.delete(head.incidentId);
    }
    queueFlush();
    if (inFlight.length === 0) drained?.();
    pump();
  };

  const pump = (): void => {
    if (!connected || stopping || !client) return;
    try {
      while (inFlight.length < maxInFlight) {
        if (buffer.length === 0) {
          buffer = outbox.readAfter(sentUpTo, READ_AHEAD);
          if (buffer.length === 0) return;
        }
        const row = buffer[0] as OutboxRow;
        // Strict outbox order: the head waits for its incident's previous version to be acked.
        if (inFlightIncidents.has(row.incidentId)) return;
        buffer.shift();
        const entry: InFlight = { seq: row.seq, incidentId: row.incidentId, row, sentAt: clock.now(), done: false };
        inFlight.push(entry);
        inFlightIncidents.add(row.incidentId);
        sentUpTo = row.seq;
        const gen = generation;
        client.publish(uplinkTopics.incident(prefix, row.grid, row.incidentId), row.payload, { qos: 1, retain: false }, (e) => onPuback(gen, entry, e));
      }
    } catch (err) {
      fail(err, 'cannot read the outbox');
    }
  };

  const queuePump = (): void => {
    if (pumpQueued) return;
    pumpQueued = true;
    queueMicrotask(() => {
      pumpQueued = false;
      pump();
    });
  };

  const armPoll = (): void => {
    if (stopping) return;
    pollTimer = clock.setTimeout(() => {
      const head = inFlight[0];
      const now = clock.now();
      // A wall clock stepped back would hide a missing PUBACK for the length of the step
      // (docs/SPEC-NOTES.md "Clock steps"): measure from now instead. A step forward only
      // resends early, which is harmless.
      if (head && now < head.sentAt) head.sentAt = now;
      if (connected && head && !head.done && now - head.sentAt > ackTimeoutMs) {
        fail(new Error(`no PUBACK for outbox row ${head.seq} within ${ackTimeoutMs} ms`), 'upstream not acknowledging');
        (client?.stream as Partial<Socket> | undefined)?.destroy?.();
      } else {
        pump();
      }
      armPoll();
    }, Math.min(pollMs, ackTimeoutMs));
  };

  // ---- commands --------------------------------------------------------------------------

  const reject = (reason: string, detail: string, err?: unknown): void => {
    rejected[reason] = (rejected[reason] ?? 0) + 1;
    const gate = throttle.allow(`cmd:${reason}`);
    if (gate.ok) logger.warn({ reason, detail, suppressed: gate.suppressed, ...(err ? { err } : {}) }, 'uplink: command refused');
  };

  const handleCommand = async (packet: IPublishPacket): Promise<void> => {
    if (packet.topic !== cmdTopic) {
      // Only from a subscription a persistent session kept from an older config (another prefix).
      reject('topic', packet.topic);
      return;
    }
    const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload;
    const parsed = parseCommand(payload, gatewayId, { retain: packet.retain });
    if (!parsed.ok) {
      reject(parsed.reason, parsed.detail);
      return;
    }
    const cmd = parsed.command;
    try {
      await deps.onCommand(cmd);
      accepted++;
      logger.info({ cmd: cmd.cmd, incident: cmd.incident }, 'uplink: command applied');
    } catch (err) {
      const code = typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string' ? err.code : 'handler';
      reject(code, `${cmd.cmd} ${cmd.incident}`, code === 'handler' ? err : undefined);
    }
  };

  // ---- connection ------------------------------------------------------------------------

  const stores = (): Pick<IClientOptions, 'incomingStore' | 'outgoingStore'> => ({ incomingStore: new Store(), outgoingStore: createNullStore() });

  const scheduleReconnect = (): void => {
    if (stopping || reconnectTimer !== undefined) return;
    attempt++;
    const delay = backoffDelay(attempt, backoff, random);
    reconnectTimer = clock.setTimeout(() => {
      reconnectTimer = undefined;
      if (stopping || !client) return;
      reconnects++;
      client.reconnect(stores());
    }, delay);
  };

  const onConnect = (): void => {
    const c = client as MqttClient;
    connected = true;
    since = clock.now();
    const socket = c.stream as Partial<Socket>;
    noDelay = typeof socket.setNoDelay === 'function';
    socket.setNoDelay?.(true);
    logger.info({ url: redactUrl(deps.url), clientId: c.options.clientId }, 'uplink connected');
    const gen = generation;
    c.publish(statusTopic, ONLINE, { qos: 1, retain: true }, (err) => {
      if (err && gen === generation) fail(err, 'cannot announce online');
    });
    c.subscribe(cmdTopic, { qos: 1 }, (err, granted) => {
      if (gen !== generation) return;
      if (err) fail(err, `cannot subscribe to ${cmdTopic}`);
      // 0x80: the broker's ACL refuses it. The city cannot command this gateway: say so loudly.
      else if (granted?.some((g) => g.qos === 128)) fail(new Error('subscription refused (0x80)'), `cannot subscribe to ${cmdTopic}`);
    });
    // Resend from the last PUBACKed row: whatever was in flight on the old connection goes again.
    inFlight.length = 0;
    inFlightIncidents.clear();
    buffer = [];
    sentUpTo = acked;
    pump();
  };

  const onClose = (): void => {
    const c = client;
    if (connected) {
      // Not reset at CONNACK: a broker that accepts and drops at once (two gateways sharing a
      // client id take each other's session) must still see a growing backoff.
      if (since !== undefined && clock.now() - since >= STABLE_MS) attempt = 0;
      since = clock.now();
      logger.warn({ inFlight: inFlight.length }, 'uplink disconnected; will resend from the outbox cursor');
    }
    connected = false;
    noDelay = false;
    generation++;
    inFlight.length = 0;
    inFlightIncidents.clear();
    buffer = [];
    drained?.();
    // Forget mqtt.js's callbacks of the dead connection (they belong to an old generation).
    if (c) for (const id of Object.keys(c.outgoing)) c.removeOutgoingMessage(Number(id));
    scheduleReconnect();
  };

  return {
    start() {
      if (started) return;
      started = true;
      acked = durable = sentUpTo = outbox.cursor();
      const tls = deps.tls;
      const options: IClientOptions = {
        clientId: deps.clientId ?? gatewayId,
        ...(deps.username !== undefined ? { username: deps.username } : {}),
        ...(deps.password !== undefined ? { password: deps.password } : {}),
        protocolVersion: 4,
        clean: false,
        keepalive: deps.keepalive ?? 30,
        connectTimeout: deps.connectTimeoutMs ?? 10_000,
        reconnectPeriod: 0,
        resubscribe: false,
        queueQoSZero: false,
        manualConnect: true,
        ...stores(),
        will: { topic: statusTopic, payload: Buffer.from(OFFLINE), qos: 1, retain: true },
        ...(tls?.ca !== undefined ? { ca: readFileSync(tls.ca) } : {}),
        ...(tls?.cert !== undefined ? { cert: readFileSync(tls.cert) } : {}),
        ...(tls?.key !== undefined ? { key: readFileSync(tls.key) } : {}),
        ...(tls ? { rejectUnauthorized: tls.rejectUnauthorized ?? true } : {}),
      };
      const c = connect(deps.url, options);
      client = c;
      c.handleMessage = (packet, done) => {
        // The PUBACK of a command goes out after it was applied (stored): a crash in between
        // gets it redelivered by the broker. A refused command is acknowledged too, or it would
        // come back forever.
        handleCommand(packet).then(
          () => done(),
          (err: unknown) => {
            fail(err, 'command handling failed');
            done();
          },
        );
      };
      c.on('connect', onConnect);
      c.on('close', onClose);
      c.on('error', (err) => fail(err, 'connection error'));
      unsubscribe = outbox.subscribe(queuePump);
      armPoll();
      c.connect();
    },

    async stop() {
      if (!started || stopping) return;
      stopping = true;
      unsubscribe?.();
      if (reconnectTimer !== undefined) clock.clearTimeout(reconnectTimer);
      if (pollTimer !== undefined) clock.clearTimeout(pollTimer);
      reconnectTimer = pollTimer = undefined;
      const c = client as MqttClient;
      const bounded = (p: Promise<void>): Promise<void> =>
        new Promise<void>((resolve) => {
          const t = setTimeout(resolve, stopTimeoutMs);
          void p.finally(() => {
            clearTimeout(t);
            resolve();
          });
        });
      if (connected && inFlight.length > 0) {
        await bounded(new Promise<void>((resolve) => (drained = resolve)));
      }
      flushAcks();
      if (connected) {
        await bounded(new Promise<void>((resolve) => c.publish(statusTopic, OFFLINE, { qos: 1, retain: true }, () => resolve())));
      }
      // A clean DISCONNECT when nothing is pending (the broker then drops the will: we said
      // `offline` ourselves); forced otherwise, and the will says it for us.
      const force = Object.keys(c.outgoing).length > 0 || !connected;
      await bounded(new Promise<void>((resolve) => c.end(force, {}, () => resolve())));
      connected = false;
      logger.info({ published, cursor: durable }, 'uplink stopped');
    },

    health() {
      // From the store's cursor: PUBACKs not yet flushed (cursorFlushMs) still count as unsent.
      let depth = 0;
      let oldest: number | undefined;
      let cursor = durable;
      try {
        const s = outbox.stats();
        ({ cursor, depth } = s);
        oldest = s.oldestCreatedAt;
      } catch (err) {
        fail(err, 'cannot read the outbox');
      }
      return {
        connected,
        since,
        outboxDepth: depth,
        oldestUnsentAgeMs: oldest === undefined ? null : Math.max(0, clock.now() - oldest),
        cursor,
        inFlight: inFlight.length,
        published,
        reconnects,
        lastError,
        commands: { accepted, rejected: { ...rejected } },
        noDelay,
      };
    },

    notify: queuePump,
  };
}

/** The URL without credentials, for logs. */
function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    u.username = '';
    u.password = '';
    return u.toString();
  } catch {
    return '(invalid url)';
  }
}
