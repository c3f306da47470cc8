import { Writable } from 'node:stream';
import { connect, type IClientOptions, type MqttClient, type Packet } from 'mqtt';
import { pino } from 'pino';
import type { DeviceRecord } from '../../../devices/device-record.js';
import { createDeviceBroker, type DeviceBroker, type DeviceBrokerDeps, type DeviceMessage, type PresenceReason } from '../../../gateway/broker/index.js';
import { hashSecret, verifySecret } from '../../../gateway/registry/secrets.js';

/**
 * The real broker in-process on port 0, with a registry double built from real scrypt hashes and
 * real mqtt.js clients. Everything a test wants to look at is recorded here.
 */

export const MQTT_MODELS: ReadonlySet<string> = new Set(['smoke-json', 'smoke-ctw', 'pager-json']);

const PLACE = { grid: '110101013001002', building: '7', room: 'B1-3' } as const;

export interface TestDevice {
  readonly id: string;
  readonly model: string;
  readonly secret: string;
}

export interface HashParams {
  readonly N: number;
  readonly r: number;
  readonly p: number;
}

/** Records with real scrypt hashes, at the production cost (hashSecret's defaults) unless told. */
export async function makeRecords(devices: readonly TestDevice[], params?: HashParams): Promise<Map<string, DeviceRecord>> {
  const map = new Map<string, DeviceRecord>();
  const hashes = new Map<string, string>();
  for (const d of devices) {
    // Devices sharing a secret share a hash here: thousands of devices in a test stay quick.
    let secretHash = params ? hashes.get(d.secret) : undefined;
    if (!secretHash) {
      secretHash = await hashSecret(d.secret, params);
      hashes.set(d.secret, secretHash);
    }
    map.set(d.id, { id: d.id, model: d.model, place: { ...PLACE }, secretHash });
  }
  return map;
}

export interface PresenceEvent {
  readonly deviceId: string;
  readonly online: boolean;
  readonly at: number;
  readonly reason: PresenceReason;
}

export interface Harness {
  readonly broker: DeviceBroker;
  readonly port: number;
  readonly tlsPort: number | undefined;
  readonly records: Map<string, DeviceRecord>;
  readonly messages: DeviceMessage[];
  readonly presence: PresenceEvent[];
  /** How often the registry's verify() (scrypt) ran, per device id. */
  readonly verifyCalls: Map<string, number>;
  /** Every log line the broker wrote, as text. */
  logs(): string;
  /** Replaces the message handler (default: record and resolve). */
  setHandler(fn: (msg: DeviceMessage) => Promise<void>): void;
  stop(): Promise<void>;
}

export interface HarnessOptions {
  readonly devices: readonly TestDevice[];
  readonly operators?: DeviceBrokerDeps['operators'];
  readonly tls?: DeviceBrokerDeps['tls'];
  readonly maxPayloadBytes?: number;
  readonly rateLimit?: DeviceBrokerDeps['rateLimit'];
  readonly clock?: () => number;
  /** scrypt cost of the test hashes; default: production. */
  readonly hashParams?: HashParams;
}

export async function startHarness(opts: HarnessOptions): Promise<Harness> {
  const records = await makeRecords(opts.devices, opts.hashParams);
  const messages: DeviceMessage[] = [];
  const presence: PresenceEvent[] = [];
  const verifyCalls = new Map<string, number>();
  let logText = '';
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      logText += chunk.toString('utf8');
      cb();
    },
  });
  const logger = pino({ level: 'debug' }, sink);
  let handler = (msg: DeviceMessage): Promise<void> => {
    messages.push(msg);
    return Promise.resolve();
  };

  const broker = createDeviceBroker({
    listen: { host: '127.0.0.1', port: 0 },
    tls: opts.tls,
    maxPayloadBytes: opts.maxPayloadBytes ?? 16_384,
    rateLimit: opts.rateLimit,
    operators: opts.operators ?? [],
    devices: {
      get: (id) => records.get(id),
      async verify(id, password) {
        verifyCalls.set(id, (verifyCalls.get(id) ?? 0) + 1);
        const r = records.get(id);
        return r?.secretHash ? verifySecret(password, r.secretHash) : false;
      },
    },
    isMqttModel: (m) => MQTT_MODELS.has(m),
    onDeviceMessage: (msg) => handler(msg),
    onPresence: (deviceId, online, at, reason) => presence.push({ deviceId, online, at, reason }),
    logger,
    ...(opts.clock ? { clock: opts.clock } : {}),
  });
  await broker.start();
  const ports = broker.ports();
  return {
    broker,
    port: ports.tcp,
    tlsPort: ports.tls,
    records,
    messages,
    presence,
    verifyCalls,
    logs: () => logText,
    setHandler(fn) {
      handler = fn;
    },
    stop: () => broker.stop(),
  };
}

const clients = new Set<MqttClient>();

/** Connects and resolves on CONNACK 0; rejects with the CONNACK code (`err.code`) otherwise. */
export function connectClient(port: number, options: IClientOptions & { protocol?: 'mqtt' | 'mqtts' } = {}): Promise<MqttClient> {
  const { protocol = 'mqtt', ...rest } = options;
  return new Promise((resolve, reject) => {
    const client = connect({
      host: '127.0.0.1',
      port,
      protocol,
      protocolVersion: 4,
      reconnectPeriod: 0,
      connectTimeout: 5_000,
      ...rest,
    });
    clients.add(client);
    const onError = (err: Error): void => {
      client.removeListener('connect', onConnect);
      client.end(true);
      reject(err);
    };
    const onConnect = (): void => {
      client.removeListener('error', onError);
      // Nagle off in the test client too: latencies measured here are the broker's.
      (client.stream as { setNoDelay?: (v: boolean) => void } | undefined)?.setNoDelay?.(true);
      resolve(client);
    };
    client.once('error', onError);
    client.once('connect', onConnect);
  });
}

export function connectDevice(port: number, d: TestDevice, extra: IClientOptions & { protocol?: 'mqtt' | 'mqtts' } = {}): Promise<MqttClient> {
  return connectClient(port, { clientId: d.id, username: d.id, password: d.secret, ...extra });
}

/** The CONNACK return code a connection attempt gets (0 when it is accepted; then it is closed). */
export async function connackCode(port: number, options: Omit<IClientOptions, 'protocol'>): Promise<number> {
  try {
    const c = await connectClient(port, options);
    await endClient(c);
    return 0;
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'number') return code;
    throw err;
  }
}

export function endClient(c: MqttClient): Promise<void> {
  clients.delete(c);
  return new Promise((resolve) => c.end(false, {}, () => resolve()));
}

/** Closes every client a test left open, without DISCONNECT. */
export async function endAllClients(): Promise<void> {
  await Promise.all([...clients].map((c) => new Promise<void>((resolve) => c.end(true, {}, () => resolve()))));
  clients.clear();
}

export function publish(c: MqttClient, topic: string, payload: string | Buffer, qos: 0 | 1 = 1, retain = false): Promise<void> {
  return new Promise((resolve, reject) => c.publish(topic, payload, { qos, retain }, (err) => (err ? reject(err) : resolve())));
}

/** The granted QoS (128 = refused) of one SUBSCRIBE, read from the SUBACK itself. */
export function subscribeGranted(c: MqttClient, filter: string, qos: 0 | 1 = 1): Promise<number> {
  return new Promise((resolve, reject) => {
    const onPacket = (packet: Packet): void => {
      if (packet.cmd !== 'suback') return;
      c.removeListener('packetreceive', onPacket);
      const g = packet.granted[0];
      if (typeof g !== 'number') reject(new Error('SUBACK without a numeric granted QoS'));
      else resolve(g);
    };
    c.on('packetreceive', onPacket);
    // mqtt.js reports a 0x80 as an error; the SUBACK listener above is the answer either way.
    c.subscribe(filter, { qos }, () => undefined);
  });
}

export async function waitFor(cond: () => boolean, timeoutMs = 5_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export function closed(c: MqttClient): Promise<void> {
  return new Promise((resolve) => {
    if (!c.connected && c.disconnected) resolve();
    else c.once('close', () => resolve());
  });
}
