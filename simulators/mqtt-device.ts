import type { Socket } from 'node:net';
import { connect, type IClientOptions, type MqttClient } from 'mqtt';
import { z } from 'zod';
import type { DeviceState, DownlinkCommand, EncodeSample, MqttModel } from '../devices/model.js';
import { deviceTopics } from '../devices/topics.js';
import { codedError } from '../devices/coded-error.js';

/*
 * One simulated MQTT device (SPEC §3): it connects as itself (client id = username = device id,
 * password = its secret, MQTT 3.1.1), leaves `offline` as its retained will on dev/{id}/status and
 * says `online` there on every (re)connect, publishes its model's payload on dev/{id}/up, sends
 * heartbeats, and listens on dev/{id}/down for the gateway's commands.
 *
 * The device remembers what it has told the gateway: after each message it decodes its own
 * payload with its model, against its previous flags, exactly as the gateway will. So a heartbeat
 * of a detector that is in alarm still says `smoke: true` (a heartbeat that said "all clear" would
 * read as `fire_clear`), and a scenario only has to name what changes.
 */

/** Time as the simulators see it: injected so that tests and scenarios run without sleeping. */
export interface SimClock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemClock: SimClock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

export type Qos = 0 | 1;

/** Error codes of the simulators (one catalogue for the folder). */
export const SIM_ERRORS = {
  SIM_ERR_STATE: 'the simulated device is not in a state to do that',
  SIM_ERR_CONNECT: 'the simulated device could not connect',
  SIM_ERR_PUBLISH: 'a publish failed',
  SIM_ERR_ACK_TIMEOUT: 'no PUBACK in time',
  SIM_ERR_SUBSCRIBE: 'the broker refused the subscription to dev/{id}/down',
} as const;
export type SimErrorCode = keyof typeof SIM_ERRORS;

export class SimulatorError extends codedError('SimulatorError', SIM_ERRORS) {}

/** SPEC §3.3 downlink, as the device checks it: it trusts the wire no more than the gateway does. */
export const DownlinkCommandSchema = z.discriminatedUnion('cmd', [
  z.object({ cmd: z.literal('ack'), incident: z.string(), text: z.string().optional() }),
  z.object({ cmd: z.literal('mute') }),
  z.object({ cmd: z.literal('self_test') }),
]);

/** A message the device got on dev/{id}/down, decoded when it could be. */
export interface ReceivedCommand {
  /** Device clock when it arrived. */
  readonly at: number;
  readonly raw: string;
  readonly command?: DownlinkCommand;
  /** Why it could not be decoded. */
  readonly error?: string;
}

export type ConnectionState = 'idle' | 'connecting' | 'online' | 'offline' | 'stopped';

export interface MqttDeviceStatus {
  readonly connection: ConnectionState;
  /** Successful CONNACKs, reconnects included. */
  readonly connects: number;
  /** Messages published on dev/{id}/up. */
  readonly sent: number;
  /** Of those, QoS 1 messages PUBACKed. */
  readonly acked: number;
  readonly errors: number;
  readonly lastError?: string;
  /** The state flags the gateway now knows for this device (the last payload, decoded). */
  readonly flags: DeviceState;
  readonly commands: readonly ReceivedCommand[];
}

export interface MqttDeviceOptions {
  /** `mqtt://host:port` or `mqtts://…`. */
  readonly url: string;
  readonly deviceId: string;
  readonly secret: string;
  readonly model: MqttModel;
  /** Heartbeat period; default the model's. 0 turns heartbeats off. */
  readonly heartbeatMs?: number;
  /** Leave `offline` (retained) as the will on dev/{id}/status. Default true. */
  readonly will?: boolean;
  /** Merged last into mqtt.js' options: tests use it to misbehave (another client id, a bad password). */
  readonly clientOptions?: Partial<IClientOptions>;
  /** Device clock: payload timestamps and the heartbeat schedule. Network timeouts are wall-clock. */
  readonly clock?: SimClock;
  /** Put the device clock into payloads that carry one. Default true. */
  readonly stamp?: boolean;
  /** How long `send` waits for a PUBACK; default 30 s. */
  readonly ackTimeoutMs?: number;
  /** Answer `self_test` with a test message and `mute` (while in alarm) with `silenced`. Default true. */
  readonly respond?: boolean;
  /** How many received commands `status.commands` keeps (oldest dropped). Default 100. */
  readonly keepCommands?: number;
  readonly onCommand?: (cmd: ReceivedCommand) => void;
}

export interface SendOptions {
  /** Default 1. */
  readonly qos?: Qos;
}

export interface MqttDevice {
  readonly deviceId: string;
  readonly model: MqttModel;
  /** Connects; resolves once the device is online (CONNACK, `online` stored, dev/{id}/down subscribed). */
  start(): Promise<void>;
  /**
   * Graceful: `offline` on dev/{id}/status, then DISCONNECT (the broker discards the will).
   * `abrupt`: a dead battery or a cut link — the socket is destroyed without DISCONNECT, so the
   * broker publishes the will.
   */
  stop(options?: { abrupt?: boolean }): Promise<void>;
  /** Encodes `sample` with the model and publishes it; resolves on PUBACK (QoS 1) or once written (QoS 0). */
  send(sample: EncodeSample, options?: SendOptions): Promise<void>;
  /** An already encoded (or deliberately broken) payload on dev/{id}/up; the device's flags are left as they are. */
  publishRaw(payload: Buffer | string, options?: SendOptions): Promise<void>;
  /** The model's alarm: `fire_alarm` for smoke, `sos` for pagers, or the event given. */
  alarm(event?: string, extra?: EncodeSample): Promise<void>;
  /** The alarm is over: `fire_clear` for smoke detectors (pagers send `cancel`). */
  clear(): Promise<void>;
  /** A periodic report: the current flags and metrics, event `heartbeat`. */
  heartbeat(options?: SendOptions): Promise<void>;
  /** A self-test message: `self_test` for smoke, `test` for pagers. */
  selfTest(): Promise<void>;
  readonly status: MqttDeviceStatus;
}

const ONLINE = 'online';
const OFFLINE = 'offline';
/** How long a graceful stop waits for the broker before it just closes. */
const STOP_GRACE_MS = 5_000;

/** Flags that describe one message, not the device: never carried into the next one. */
const MOMENTARY_FLAGS: ReadonlySet<string> = new Set(['test']);

export function createMqttDevice(options: MqttDeviceOptions): MqttDevice {
  const { url, deviceId, secret, model } = options;
  const clock = options.clock ?? systemClock;
  const heartbeatMs = options.heartbeatMs ?? model.heartbeatMs;
  const ackTimeoutMs = options.ackTimeoutMs ?? 30_000;
  const respond = options.respond ?? true;
  const stamp = options.stamp ?? true;
  const keepCommands = options.keepCommands ?? 100;
  const topics = { up: deviceTopics.up(deviceId), status: deviceTopics.status(deviceId), down: deviceTopics.down(deviceId) };

  let client: MqttClient | undefined;
  let connection: ConnectionState = 'idle';
  let connects = 0;
  let sent = 0;
  let acked = 0;
  let errors = 0;
  let lastError: string | undefined;
  let flags: Record<string, boolean> = {};
  let metrics: Record<string, number> = {};
  let heartbeatTimer: unknown;
  let abortStart: ((err: Error) => void) | undefined;
  const commands: ReceivedCommand[] = [];

  const noteError = (err: unknown): void => {
    errors++;
    lastError = err instanceof Error ? err.message : String(err);
  };

  function clientOptions(): IClientOptions {
    return {
      clientId: deviceId,
      username: deviceId,
      password: secret,
      protocolVersion: 4,
      clean: true,
      keepalive: 60,
      reconnectPeriod: 1000,
      connectTimeout: 10_000,
      ...(options.will === false ? {} : { will: { topic: topics.status, payload: Buffer.from(OFFLINE), qos: 1, retain: true } }),
      ...options.clientOptions,
    };
  }

  /** mqtt.js leaves Nagle on (DESIGN.md): ~10 ms more per message under load. Every new socket gets it off. */
  function noDelay(c: MqttClient): void {
    const stream = c.stream as Partial<Socket> | undefined;
    stream?.setNoDelay?.(true);
  }

  /** Publishes waiting for their callback; settled (rejected) by stop() so that nothing hangs on a dead link. */
  const pending = new Set<(err: Error) => void>();

  function publish(payload: Buffer | string, qos: Qos): Promise<void> {
    const c = client;
    if (!c || connection === 'stopped' || connection === 'idle') {
      return Promise.reject(new SimulatorError('SIM_ERR_STATE', `${deviceId} is ${connection}`));
    }
    return new Promise<void>((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const settle = (err: Error | undefined): void => {
        if (!pending.delete(settle)) return;
        if (timer) clearTimeout(timer);
        if (err) {
          noteError(err);
          reject(err);
          return;
        }
        if (qos === 1) acked++;
        resolve();
      };
      pending.add(settle);
      if (qos === 1) timer = setTimeout(() => settle(new SimulatorError('SIM_ERR_ACK_TIMEOUT', `${deviceId} after ${ackTimeoutMs} ms`)), ackTimeoutMs);
      sent++;
      c.publish(topics.up, payload, { qos }, (err) => settle(err ? new SimulatorError('SIM_ERR_PUBLISH', `${deviceId}: ${err.message}`, { cause: err }) : undefined));
    });
  }

  function failPending(): void {
    for (const settle of [...pending]) settle(new SimulatorError('SIM_ERR_STATE', `${deviceId} stopped before the PUBACK`));
  }

  /** What the gateway will make of this payload becomes what the device remembers (see the top). */
  function remember(payload: Buffer): void {
    const decoded = model.decode(payload, { deviceId, receivedAt: clock.now(), previous: flags });
    if (!decoded.ok) return;
    const next: Record<string, boolean> = {};
    for (const [flag, value] of Object.entries(decoded.value.state)) if (!MOMENTARY_FLAGS.has(flag)) next[flag] = value;
    flags = next;
    metrics = { ...metrics, ...decoded.value.metrics };
  }

  function compose(sample: EncodeSample): EncodeSample {
    const ts = sample.ts ?? (stamp ? clock.now() : undefined);
    const carried = { ...metrics };
    // A sample that speaks of the battery without a level means a level on that side of the
    // threshold (mqtt-common.ts sampleBatteryPct): the last level must not contradict it.
    const aboutBattery = sample.state?.battery_low !== undefined || (sample.events ?? []).some((e) => e === 'battery_low' || e === 'battery_ok');
    if (aboutBattery && sample.metrics?.battery_pct === undefined) delete carried.battery_pct;
    return {
      ...sample,
      ...(ts === undefined ? {} : { ts }),
      metrics: { ...carried, ...sample.metrics },
      state: { ...flags, ...sample.state },
    };
  }

  async function send(sample: EncodeSample, opts: SendOptions = {}): Promise<void> {
    const payload = model.encode(compose(sample));
    // Remembered before the PUBACK: the gateway has decided what it means once it has it.
    const result = publish(payload, opts.qos ?? 1);
    remember(payload);
    await result;
  }

  function hasEvent(event: string): boolean {
    return model.produces.events.includes(event);
  }

  function selfTestEvent(): string {
    return hasEvent('self_test') ? 'self_test' : 'test';
  }

  function onDown(payload: Buffer): void {
    const raw = payload.toString('utf8');
    let received: ReceivedCommand;
    try {
      const parsed = DownlinkCommandSchema.safeParse(JSON.parse(raw));
      received = parsed.success ? { at: clock.now(), raw, command: parsed.data } : { at: clock.now(), raw, error: parsed.error.issues[0]?.message ?? 'invalid' };
    } catch (err) {
      received = { at: clock.now(), raw, error: (err as Error).message };
    }
    commands.push(received);
    if (commands.length > keepCommands) commands.shift();
    try {
      options.onCommand?.(received);
    } catch (err) {
      noteError(err);
    }
    if (!respond || !received.command) return;
    // A real detector answers a remote self-test with a test alarm, and a remote mute while it
    // sounds with a silenced report. Pagers just show or beep: nothing goes back.
    const reply =
      received.command.cmd === 'self_test'
        ? device.selfTest()
        : received.command.cmd === 'mute' && flags.smoke === true && hasEvent('silenced')
          ? send({ events: ['silenced'] })
          : undefined;
    reply?.catch(noteError);
  }

  function scheduleHeartbeat(): void {
    if (heartbeatMs <= 0) return;
    heartbeatTimer = clock.setTimeout(() => {
      heartbeatTimer = undefined;
      if (connection === 'stopped') return;
      // No link, no heartbeat: a real device does not queue its periodic report.
      if (connection === 'online') device.heartbeat().catch(noteError);
      scheduleHeartbeat();
    }, heartbeatMs);
  }

  function stopHeartbeat(): void {
    if (heartbeatTimer !== undefined) clock.clearTimeout(heartbeatTimer);
    heartbeatTimer = undefined;
  }

  const device: MqttDevice = {
    deviceId,
    model,

    start() {
      if (connection !== 'idle') return Promise.reject(new SimulatorError('SIM_ERR_STATE', `${deviceId} was started already`));
      connection = 'connecting';
      const c = connect(url, clientOptions());
      client = c;
      return new Promise<void>((resolve, reject) => {
        let first = true;
        abortStart = (err) => {
          first = false;
          reject(err);
        };
        c.on('connect', () => {
          noDelay(c);
          connects++;
          connection = 'online';
          // SPEC §3: retained `online` on every (re)connect; the will says the opposite.
          const announce = c.publishAsync(topics.status, ONLINE, { qos: 1, retain: true }).then(() => undefined);
          if (!first) {
            announce.catch(noteError);
            return;
          }
          first = false;
          // mqtt.js resubscribes by itself after a reconnect (resubscribe: true).
          const subscribe = c.subscribeAsync(topics.down, { qos: 1 }).then((granted) => {
            if (granted.some((g) => g.qos === 128)) throw new SimulatorError('SIM_ERR_SUBSCRIBE', topics.down);
          });
          Promise.all([announce, subscribe]).then(
            () => {
              abortStart = undefined;
              if (connection === 'stopped') return;
              scheduleHeartbeat();
              resolve();
            },
            (err: unknown) => {
              noteError(err);
              connection = 'stopped';
              c.end(true);
              reject(err instanceof Error ? err : new Error(String(err)));
            },
          );
        });
        c.on('message', (topic, payload) => {
          if (topic === topics.down) onDown(payload);
        });
        c.on('offline', () => {
          if (connection === 'online') connection = 'offline';
        });
        c.on('error', (err) => {
          noteError(err);
          if (!first) return;
          // Before the first CONNACK an error is the answer to start(): refused credentials
          // (CONNACK 4 or 5) or nothing listening. Retrying would hide it.
          first = false;
          connection = 'stopped';
          c.end(true);
          const code = (err as { code?: unknown }).code;
          reject(new SimulatorError('SIM_ERR_CONNECT', `${deviceId} to ${url}: ${err.message}${typeof code === 'number' ? ` (CONNACK ${code})` : ''}`, { cause: err }));
        });
      });
    },

    async stop(opts = {}) {
      const c = client;
      stopHeartbeat();
      abortStart?.(new SimulatorError('SIM_ERR_STATE', `${deviceId} was stopped before it came online`));
      abortStart = undefined;
      if (!c || connection === 'stopped' || connection === 'idle') {
        connection = 'stopped';
        return;
      }
      const wasOnline = connection === 'online';
      connection = 'stopped';
      if (opts.abrupt) {
        // No DISCONNECT: to the broker this is a lost link, so it publishes the will.
        (c.stream as Partial<Socket> | undefined)?.destroy?.();
        await c.endAsync(true);
        failPending();
        return;
      }
      const graceMs = Math.min(ackTimeoutMs, STOP_GRACE_MS);
      if (wasOnline) {
        try {
          await withTimeout(c.publishAsync(topics.status, OFFLINE, { qos: 1, retain: true }), graceMs);
        } catch (err) {
          noteError(err);
        }
      }
      // mqtt.js' graceful end waits for in-flight PUBACKs: a gateway that never answers must not hang stop().
      try {
        await withTimeout(c.endAsync(!wasOnline), graceMs);
      } catch {
        await c.endAsync(true);
      }
      failPending();
    },

    send,

    publishRaw(payload, opts = {}) {
      return publish(payload, opts.qos ?? 1);
    },

    alarm(event, extra = {}) {
      const name = event ?? (model.kind === 'smoke' ? 'fire_alarm' : 'sos');
      return send({ ...extra, events: [name, ...(extra.events ?? [])] });
    },

    clear() {
      return send({ events: [model.kind === 'smoke' ? 'fire_clear' : 'cancel'] });
    },

    heartbeat(opts = {}) {
      return send({ events: ['heartbeat'] }, opts);
    },

    selfTest() {
      const event = selfTestEvent();
      return send({ events: [event], ...(event === 'self_test' ? { state: { test: true } } : {}) });
    },

    get status(): MqttDeviceStatus {
      return {
        connection,
        connects,
        sent,
        acked,
        errors,
        ...(lastError === undefined ? {} : { lastError }),
        flags: { ...flags },
        commands: [...commands],
      };
    },
  };
  return device;
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new SimulatorError('SIM_ERR_ACK_TIMEOUT', `after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
