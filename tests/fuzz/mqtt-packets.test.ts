// Issue 8 item 2, the MQTT wire: raw TCP clients (node:net) send the real broker of an in-process
// gateway malformed packets. Each connection is closed (refused with a CONNACK code where MQTT
// has one), counted where the broker counts, and bounded in time; a device connected all along
// stays connected and its QoS 1 reading afterwards is stored.
import { connect, type Socket } from 'node:net';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deviceTopics } from '../../devices/topics.js';
import type { BrokerStats } from '../../gateway/broker/counters.js';
import { CONNECT_TIMEOUT_MS as BROKER_CONNECT_TIMEOUT_MS } from '../../gateway/broker/device-broker.js';
import { connectAsDevice, makeDevices, mqttModel, startGatewayInProcess, writeGatewaySite, type InProcessGateway, type TestDevice } from '../helpers/gateway.js';

const CLOSE_TIMEOUT_MS = 10_000;
/** A half CONNECT is closed after the broker's connect timeout (gateway/broker/device-broker.ts). */
const CONNECT_TIMEOUT_MS = BROKER_CONNECT_TIMEOUT_MS;
const RANDOM_RUNS = 40;

const [good, other] = makeDevices('FZM', 2, { model: 'smoke-json' }) as [TestDevice, TestDevice];
let gw: InProcessGateway;
/** Opened first, checked last: they wait out the connect timeout while the other cases run. */
let slowloris: RawClient[] = [];

// ---- MQTT 3.1.1 by hand -------------------------------------------------------------------

function varint(n: number): Buffer {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return Buffer.from(out);
}

function str(s: string | Buffer): Buffer {
  const b = typeof s === 'string' ? Buffer.from(s, 'utf8') : s;
  const len = Buffer.alloc(2);
  len.writeUInt16BE(b.length);
  return Buffer.concat([len, b]);
}

function packet(header: number, body: Buffer, remaining = body.length): Buffer {
  return Buffer.concat([Buffer.from([header]), varint(remaining), body]);
}

interface ConnectOpts {
  protocol?: string;
  level?: number;
  flags?: number;
  keepalive?: number;
  clientId?: string | Buffer;
  username?: string | Buffer;
  password?: string | Buffer;
}

function connectBody(o: ConnectOpts = {}): Buffer {
  const hasUser = o.username !== undefined;
  const hasPass = o.password !== undefined;
  const flags = o.flags ?? (0x02 | (hasUser ? 0x80 : 0) | (hasPass ? 0x40 : 0));
  const ka = Buffer.alloc(2);
  ka.writeUInt16BE(o.keepalive ?? 30);
  return Buffer.concat([
    str(o.protocol ?? 'MQTT'),
    Buffer.from([o.level ?? 4, flags]),
    ka,
    str(o.clientId ?? 'raw'),
    ...(hasUser ? [str(o.username as string | Buffer)] : []),
    ...(hasPass ? [str(o.password as string | Buffer)] : []),
  ]);
}

const CONNECT = (o?: ConnectOpts): Buffer => packet(0x10, connectBody(o));
const PUBLISH_QOS1 = (topic: string, payload: Buffer | string, id = 1): Buffer => {
  const pid = Buffer.alloc(2);
  pid.writeUInt16BE(id);
  return packet(0x32, Buffer.concat([str(topic), pid, Buffer.from(payload)]));
};

// ---- a raw client ---------------------------------------------------------------------------

interface RawClient {
  readonly socket: Socket;
  readonly received: () => Buffer;
  /** Resolves once `n` bytes came back; rejects after CLOSE_TIMEOUT_MS. */
  answered(n: number): Promise<void>;
  /** Resolves when the server closed the connection; rejects after `ms`. */
  closed(ms?: number): Promise<void>;
}

async function raw(): Promise<RawClient> {
  const socket = connect({ host: '127.0.0.1', port: gw.port });
  socket.setNoDelay(true);
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  socket.on('error', () => undefined); // ECONNRESET is one way of being closed
  const gone = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  return {
    socket,
    received: () => Buffer.concat(chunks),
    async answered(n) {
      const deadline = Date.now() + CLOSE_TIMEOUT_MS;
      while (Buffer.concat(chunks).length < n) {
        if (Date.now() > deadline) throw new Error(`no ${n}-byte answer within ${CLOSE_TIMEOUT_MS} ms`);
        await new Promise((r) => setTimeout(r, 10));
      }
    },
    closed(ms = CLOSE_TIMEOUT_MS) {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`the broker kept the connection open for ${ms} ms`)), ms);
      });
      return Promise.race([gone, timeout]).finally(() => clearTimeout(timer));
    },
  };
}

/** Sends `bytes` on a fresh connection; resolves with what the broker answered before it closed the connection. */
async function sendAndExpectClose(bytes: Buffer | readonly Buffer[], ms = CLOSE_TIMEOUT_MS): Promise<Buffer> {
  const c = await raw();
  try {
    const list: readonly Buffer[] = Buffer.isBuffer(bytes) ? [bytes] : bytes;
    for (const b of list) c.socket.write(b);
    await c.closed(ms);
    return c.received();
  } finally {
    c.socket.destroy();
  }
}

const refused = (): BrokerStats['refused'] => gw.gateway.broker.stats().refused;
const CONNACK = (code: number): Buffer => Buffer.from([0x20, 0x02, 0x00, code]);

beforeAll(async () => {
  const site = await writeGatewaySite({ devices: [good, other] });
  gw = await startGatewayInProcess(site, { logLevel: 'warn' });
  // Half a CONNECT, then silence; and a fixed header that promises a body never sent.
  const half = CONNECT({ clientId: good.id, username: good.id, password: good.secret });
  slowloris = await Promise.all([raw(), raw(), raw()]);
  slowloris[0]?.socket.write(half.subarray(0, 7));
  slowloris[1]?.socket.write(Buffer.from([0x10])); // a type byte, no length
  slowloris[2]?.socket.write(Buffer.from([0x10, 0xc8, 0x01])); // 200 bytes promised, none sent
});
afterAll(async () => {
  for (const c of slowloris) c.socket.destroy();
  await gw?.stop();
});

describe('malformed MQTT packets on raw TCP', () => {
  let device: Awaited<ReturnType<typeof connectAsDevice>>;
  beforeAll(async () => {
    device = await connectAsDevice(gw.url, good);
  });

  it.each([
    ['reserved packet type 0', Buffer.from([0x00, 0x00])],
    ['reserved packet type 15', Buffer.from([0xf0, 0x00])],
    ['CONNECT with reserved flag bits in the fixed header', packet(0x1f, connectBody({ clientId: 'x' }))],
    ['a Remaining Length of five bytes (malformed varint)', Buffer.from([0x10, 0xff, 0xff, 0xff, 0xff, 0x7f])],
    ['CONNECT whose Remaining Length is shorter than its body', packet(0x10, connectBody({ clientId: 'x', username: good.id }), 6)],
    ['CONNECT whose strings run past the end of the packet', packet(0x10, Buffer.concat([str('MQTT'), Buffer.from([4, 0xc2, 0, 30]), Buffer.from([0x00, 0xff, 0x61])]))],
    ['protocol name MQTX', CONNECT({ protocol: 'MQTX', clientId: 'x' })],
    ['CONNECT with the reserved connect flag set', CONNECT({ clientId: 'x', flags: 0x03 })],
    ['PUBLISH before CONNECT', PUBLISH_QOS1(deviceTopics.up(good.id), '{"smoke":true,"battery":50}')],
    ['SUBSCRIBE before CONNECT', packet(0x82, Buffer.concat([Buffer.from([0, 1]), str('#'), Buffer.from([1])]))],
    ['PINGREQ before CONNECT', Buffer.from([0xc0, 0x00])],
    ['two CONNECTs', [CONNECT({ clientId: other.id, username: other.id, password: other.secret }), CONNECT({ clientId: other.id, username: other.id, password: other.secret })]],
  ] as const)('%s: closed', async (_name, bytes) => {
    await sendAndExpectClose(bytes);
    expect(device.connected).toBe(true);
  });

  it('protocol level 99: closed (mqtt-packet refuses it while parsing, before a CONNACK 1 could be sent)', async () => {
    const answer = await sendAndExpectClose(CONNECT({ level: 99, clientId: 'x' }));
    expect([0, 4]).toContain(answer.length);
    if (answer.length === 4) expect(answer).toEqual(CONNACK(1));
  });

  it('invalid UTF-8 in the username: CONNACK 5, counted auth_unknown_device', async () => {
    const before = refused().auth_unknown_device;
    const answer = await sendAndExpectClose(CONNECT({ clientId: good.id, username: Buffer.from([0x46, 0x5a, 0xc0, 0xaf]), password: 'x' }));
    expect(answer).toEqual(CONNACK(5));
    expect(refused().auth_unknown_device).toBe(before + 1);
  });

  it('invalid UTF-8 in the client id of a real device: CONNACK 5, counted auth_client_id_mismatch; the device keeps its session', async () => {
    const before = refused().auth_client_id_mismatch;
    const answer = await sendAndExpectClose(CONNECT({ clientId: Buffer.concat([Buffer.from(good.id), Buffer.from([0xed, 0xa0, 0x80])]), username: good.id, password: good.secret }));
    expect(answer).toEqual(CONNACK(5));
    expect(refused().auth_client_id_mismatch).toBe(before + 1);
  });

  it('a Remaining Length of 256 MiB before CONNECT: closed before it is buffered, counted packet_too_large', async () => {
    const before = refused().packet_too_large;
    await sendAndExpectClose(Buffer.from([0x30, 0xff, 0xff, 0xff, 0x7f]));
    expect(refused().packet_too_large).toBe(before + 1);
  });

  it('after CONNECT: an oversize PUBLISH header closes the connection (packet_too_large), an invalid-UTF-8 topic is refused by the ACL', async () => {
    const c = await raw();
    c.socket.write(CONNECT({ clientId: other.id, username: other.id, password: other.secret }));
    await c.answered(4);
    expect(c.received()).toEqual(CONNACK(0));
    const before = refused();
    // The topic dev/FZM-01\xff/up: mqtt-packet decodes it with U+FFFD, which is no topic of this device.
    const badTopic = Buffer.concat([Buffer.from(`dev/${other.id}`), Buffer.from([0xff]), Buffer.from('/up')]);
    c.socket.write(packet(0x32, Buffer.concat([str(badTopic), Buffer.from([0, 7]), Buffer.from('{"smoke":true,"battery":5}')])));
    // The refused QoS 1 publish is still acknowledged (MQTT-3.3.5-2): PUBACK 7.
    await c.answered(8);
    expect(c.received().subarray(4)).toEqual(Buffer.from([0x40, 0x02, 0x00, 0x07]));
    c.socket.write(Buffer.from([0x30, 0xff, 0xff, 0xff, 0x7f]));
    await c.closed();
    expect(refused().acl_publish).toBe(before.acl_publish + 1);
    expect(refused().packet_too_large).toBe(before.packet_too_large + 1);
    c.socket.destroy();
  });

  it('after CONNECT, half a PUBLISH and silence: closed by the keepalive (1.5 × 1 s)', async () => {
    const c = await raw();
    c.socket.write(CONNECT({ clientId: other.id, username: other.id, password: other.secret, keepalive: 1 }));
    c.socket.write(PUBLISH_QOS1(deviceTopics.up(other.id), '{"smoke":false,"battery":90}').subarray(0, 9));
    await c.closed();
    c.socket.destroy();
  });

  it(`random bytes (${RANDOM_RUNS} runs, with and without a valid CONNECT first): every connection closed or answered, never a crash`, async () => {
    const valid = CONNECT({ clientId: other.id, username: other.id, password: other.secret });
    await fc.assert(
      fc.asyncProperty(fc.boolean(), fc.uint8Array({ minLength: 1, maxLength: 300 }), async (connectFirst, noise) => {
        const c = await raw();
        if (connectFirst) c.socket.write(valid);
        c.socket.write(noise);
        // Random bytes can be a valid packet (a PINGREQ) or an incomplete one: end our side, then
        // the broker must close its side too.
        c.socket.end();
        await c.closed();
        c.socket.destroy();
      }),
      { numRuns: RANDOM_RUNS },
    );
  });

  it('the device connected all along is still connected, and its QoS 1 reading is stored', async () => {
    expect(device.connected).toBe(true);
    const ts = Date.now();
    await device.publishAsync(deviceTopics.up(good.id), mqttModel('smoke-json').encode({ ts, metrics: { battery_pct: 80 }, state: { smoke: true } }), { qos: 1 });
    expect(gw.gateway.store.queryReadings({ deviceId: good.id, from: ts, to: ts }).map((r) => r.reading.events)).toEqual([['fire_alarm']]);
  });

  it('half packets before CONNECT (slowloris) are closed after the connect timeout', async () => {
    await Promise.all(slowloris.map((c) => c.closed(CONNECT_TIMEOUT_MS + 15_000)));
    expect(device.connected).toBe(true);
  }, CONNECT_TIMEOUT_MS + 20_000);
});
