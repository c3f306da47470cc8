import { createServer, Socket, type AddressInfo } from 'node:net';
import { Aedes, type AuthenticateError, type ConnectPacket } from 'aedes';
import { connect, type MqttClient } from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { MODELS } from '../../../devices/catalogue.js';
import type { DeviceState, EncodeSample, MqttModel } from '../../../devices/model.js';
import type { ReadingDraft } from '../../../devices/reading.js';
import { parseDeviceTopic } from '../../../devices/topics.js';
import { runLoad, type LoadDevice } from '../../../simulators/load.js';
import { createMqttDevice, SimulatorError, type MqttDevice, type SimClock } from '../../../simulators/mqtt-device.js';

/*
 * The simulators against a real aedes broker in-process (plain TCP on a free port, no ACL): the
 * gateway's own broker is tested elsewhere. A watcher client sees what the gateway would see and
 * decodes every uplink with the device's model.
 */

const MQTT = [...MODELS.values()].filter((m): m is MqttModel => m.transport === 'mqtt');
const modelOf = (id: string): MqttModel => MQTT.find((m) => m.id === id) as MqttModel;

interface Received {
  readonly deviceId: string;
  readonly payload: Buffer;
  readonly reading: ReadingDraft;
}

let aedes: Aedes;
let url: string;
const sockets = new Set<Socket>();
const connects: ConnectPacket[] = [];
let server: ReturnType<typeof createServer>;

let watcher: MqttClient;
const uplinks: Received[] = [];
const statuses: { deviceId: string; text: string; retain: boolean }[] = [];
/** What the watcher knows of each device: its last state, as the gateway's store would. */
const known = new Map<string, DeviceState>();
const deviceModels = new Map<string, MqttModel>();
const devices: MqttDevice[] = [];

beforeAll(async () => {
  aedes = await Aedes.createBroker({
    preConnect(_client, packet, done) {
      connects.push(packet);
      done(null, true);
    },
    authenticate(_client, _username, password, done) {
      if (password?.toString() === 'wrong') {
        const err = new Error('bad password') as AuthenticateError;
        err.returnCode = 4;
        done(err, null);
        return;
      }
      done(null, true);
    },
  });
  server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    aedes.handle(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `mqtt://127.0.0.1:${(server.address() as AddressInfo).port}`;

  watcher = connect(url, { clientId: 'watcher', protocolVersion: 4, reconnectPeriod: 0 });
  await new Promise<void>((resolve, reject) => {
    watcher.once('connect', () => resolve());
    watcher.once('error', reject);
  });
  watcher.on('message', (topic, payload, packet) => {
    const t = parseDeviceTopic(topic);
    if (!t) return;
    if (t.channel === 'status') statuses.push({ deviceId: t.deviceId, text: payload.toString(), retain: packet.retain });
    if (t.channel !== 'up') return;
    const model = deviceModels.get(t.deviceId);
    if (!model) return;
    const decoded = model.decode(payload, { deviceId: t.deviceId, receivedAt: Date.now(), previous: known.get(t.deviceId) });
    if (!decoded.ok) throw new Error(`${t.deviceId}: ${decoded.error.message}`);
    known.set(t.deviceId, decoded.value.state);
    uplinks.push({ deviceId: t.deviceId, payload, reading: decoded.value });
  });
  await watcher.subscribeAsync(['dev/+/up', 'dev/+/status'], { qos: 1 });
});

afterEach(async () => {
  await Promise.allSettled(devices.splice(0).map((d) => d.stop({ abrupt: true })));
  vi.restoreAllMocks();
});

afterAll(async () => {
  await watcher?.endAsync(true);
  for (const s of sockets) s.destroy();
  await new Promise<void>((resolve) => aedes.close(() => resolve()));
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

async function until(what: string, cond: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * Device id → whether its connection ended with a DISCONNECT packet. aedes sets the (private)
 * `_disconnected` flag only on a DISCONNECT; it is the flag that decides whether the will is sent.
 */
function watchCloses() {
  const closed = new Map<string, boolean>();
  const listener = (client: { id: string }) => closed.set(client.id, (client as unknown as { _disconnected?: boolean })._disconnected === true);
  aedes.on('clientDisconnect', listener);
  return Object.assign(closed, { stop: () => aedes.removeListener('clientDisconnect', listener) });
}

let counter = 0;
/** A device with an id of its own per test, a clock near real time that moves 1 s a read. */
function device(modelId: string, opts: Partial<Parameters<typeof createMqttDevice>[0]> = {}): MqttDevice {
  const model = modelOf(modelId);
  const id = `${modelId.toUpperCase()}-T${++counter}`;
  deviceModels.set(id, model);
  let now = Date.now();
  const clock: SimClock = { now: () => (now += 1000), setTimeout: (fn, ms) => setTimeout(fn, ms), clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout) };
  const d = createMqttDevice({ url, deviceId: id, secret: `secret-${id}`, model, clock, ...opts });
  devices.push(d);
  return d;
}

const readingsOf = (id: string) => uplinks.filter((u) => u.deviceId === id).map((u) => u.reading);

/** Per model: what a scenario asks for, and the events and flags the gateway must read back. */
const SEQUENCES: Record<string, { sample: EncodeSample; events: string[]; state: Record<string, boolean> }[]> = {
  'smoke-json': [
    { sample: { events: ['heartbeat'], metrics: { battery_pct: 90, rssi_dbm: -70 } }, events: ['heartbeat'], state: { smoke: false } },
    { sample: { events: ['fire_alarm'] }, events: ['fire_alarm'], state: { smoke: true } },
    // A heartbeat during the alarm still says smoke: no fire_clear.
    { sample: { events: ['heartbeat'] }, events: ['heartbeat'], state: { smoke: true } },
    { sample: { events: ['fire_clear'] }, events: ['fire_clear'], state: { smoke: false } },
    { sample: { events: ['battery_low'] }, events: ['battery_low'], state: { battery_low: true } },
    { sample: { events: ['tamper'] }, events: ['tamper'], state: { tamper: true, battery_low: true } },
  ],
  'smoke-ctw': [
    { sample: { events: ['heartbeat'], metrics: { battery_pct: 88, rssi_dbm: -97 } }, events: ['heartbeat'], state: { smoke: false } },
    { sample: { events: ['fire_alarm'] }, events: ['fire_alarm'], state: { smoke: true } },
    { sample: { events: ['silenced'] }, events: ['silenced'], state: { smoke: true, silenced: true } },
    { sample: { events: ['heartbeat'] }, events: ['heartbeat'], state: { smoke: true, silenced: true } },
    { sample: { events: ['fire_clear'] }, events: ['fire_clear'], state: { smoke: false, silenced: false } },
    { sample: { events: ['fault'] }, events: ['fault'], state: { fault: true } },
  ],
  'pager-json': [
    { sample: { events: ['sos'], metrics: { battery_pct: 80 } }, events: ['sos'], state: { battery_low: false } },
    { sample: { events: ['service_call'], service: 'meal' }, events: ['service_call'], state: { battery_low: false } },
    { sample: { events: ['heartbeat'], metrics: { battery_pct: 12 } }, events: ['battery_low', 'heartbeat'], state: { battery_low: true } },
    { sample: { events: ['fall'] }, events: ['fall'], state: { battery_low: true } },
    { sample: { events: ['heartbeat'], metrics: { battery_pct: 95 } }, events: ['battery_ok', 'heartbeat'], state: { battery_low: false } },
  ],
};

describe('createMqttDevice', () => {
  it.each(MQTT.map((m) => m.id))('%s connects as itself, says online, and publishes its encoded payloads', async (modelId) => {
    const d = device(modelId, { heartbeatMs: 0 });
    await d.start();

    const packet = connects.find((p) => p.clientId === d.deviceId);
    expect(packet).toMatchObject({ clientId: d.deviceId, username: d.deviceId, protocolVersion: 4, clean: true });
    expect(packet?.password?.toString()).toBe(`secret-${d.deviceId}`);
    expect(packet?.will).toMatchObject({ topic: `dev/${d.deviceId}/status`, retain: true, qos: 1 });
    expect(packet?.will?.payload.toString()).toBe('offline');
    await until('online', () => statuses.some((s) => s.deviceId === d.deviceId && s.text === 'online'));

    const sequence = SEQUENCES[modelId] ?? [];
    for (const step of sequence) await d.send(step.sample, { qos: 1 });
    await until('every uplink', () => readingsOf(d.deviceId).length === sequence.length);

    const readings = readingsOf(d.deviceId);
    readings.forEach((r, i) => {
      const step = sequence[i];
      expect(r.events, `${modelId} message ${i}`).toEqual(step?.events);
      expect(r.state).toMatchObject(step?.state ?? {});
    });
    // The payload's time is the device clock's, and the device remembers what the gateway knows.
    expect(readings.every((r, i) => i === 0 || r.ts > (readings[i - 1]?.ts ?? 0))).toBe(true);
    // (but for `test`, which describes one message, not the device).
    const { test: _test, ...lastState } = readings[readings.length - 1]?.state ?? {};
    expect(d.status.flags).toEqual(lastState);
    expect(d.status).toMatchObject({ connection: 'online', connects: 1, sent: sequence.length, acked: sequence.length, errors: 0 });
    if (modelId === 'pager-json') expect(readings[1]?.service).toBe('meal');
  });

  it('turns Nagle off on its socket', async () => {
    const spy = vi.spyOn(Socket.prototype, 'setNoDelay');
    const d = device('smoke-json', { heartbeatMs: 0 });
    await d.start();
    expect(spy).toHaveBeenCalledWith(true);
  });

  it('QoS 0 sends resolve once written', async () => {
    const d = device('pager-json', { heartbeatMs: 0 });
    await d.start();
    await d.send({ events: ['sos'] }, { qos: 0 });
    await until('the QoS 0 uplink', () => readingsOf(d.deviceId).length === 1);
    expect(d.status).toMatchObject({ sent: 1, acked: 0 });
  });

  it('sends heartbeats on its own, carrying its state', async () => {
    const d = device('smoke-json', { heartbeatMs: 50 });
    await d.start();
    await d.alarm();
    await until('two heartbeats', () => readingsOf(d.deviceId).length >= 3);
    const [alarm, ...beats] = readingsOf(d.deviceId);
    expect(alarm?.events).toEqual(['fire_alarm']);
    for (const b of beats) expect(b).toMatchObject({ events: ['heartbeat'], state: { smoke: true } });
  });

  it('the broker publishes its will, offline and retained, when it dies abruptly', async () => {
    const d = device('smoke-ctw', { heartbeatMs: 0 });
    await d.start();
    await until('online', () => statuses.some((s) => s.deviceId === d.deviceId && s.text === 'online'));
    const closed = watchCloses();
    await d.stop({ abrupt: true });
    await until('the will', () => statuses.some((s) => s.deviceId === d.deviceId && s.text === 'offline'));
    // The connection closed without a DISCONNECT packet: to the broker, a lost link.
    await until('the close', () => closed.has(d.deviceId));
    closed.stop();
    expect(closed.get(d.deviceId)).toBe(false);
    expect(d.status.connection).toBe('stopped');
    await expect(d.send({ events: ['heartbeat'] })).rejects.toMatchObject({ code: 'SIM_ERR_STATE' });

    // Retained: a client that subscribes later still reads offline.
    const late = connect(url, { clientId: `late-${d.deviceId}`, protocolVersion: 4, reconnectPeriod: 0 });
    const got = new Promise<string>((resolve) => late.on('message', (_t, p) => resolve(p.toString())));
    await late.subscribeAsync(`dev/${d.deviceId}/status`, { qos: 1 });
    expect(await got).toBe('offline');
    await late.endAsync(true);
  });

  it('a graceful stop says offline itself and disconnects (no will)', async () => {
    const d = device('pager-json', { heartbeatMs: 0 });
    await d.start();
    const closed = watchCloses();
    await d.stop();
    await until('offline', () => statuses.some((s) => s.deviceId === d.deviceId && s.text === 'offline'));
    await until('the close', () => closed.has(d.deviceId));
    closed.stop();
    expect(closed.get(d.deviceId)).toBe(true);
  });

  it.each([
    ['smoke-json', 'self_test'],
    ['smoke-ctw', 'self_test'],
    ['pager-json', 'test'],
  ])('%s answers a self_test command on dev/{id}/down with a test message', async (modelId, event) => {
    const d = device(modelId, { heartbeatMs: 0 });
    await d.start();
    await watcher.publishAsync(`dev/${d.deviceId}/down`, modelOf(modelId).encodeCommand({ cmd: 'self_test' }), { qos: 1 });
    await until('the test message', () => readingsOf(d.deviceId).length === 1);
    expect(readingsOf(d.deviceId)[0]?.events).toContain(event);
    expect(d.status.commands).toMatchObject([{ command: { cmd: 'self_test' } }]);
    // A self-test is a moment: the next heartbeat is not a test any more.
    await d.heartbeat();
    await until('the heartbeat', () => readingsOf(d.deviceId).length === 2);
    expect(readingsOf(d.deviceId)[1]?.events).toEqual(['heartbeat']);
  });

  it('records ack and mute, answers mute with silenced while in alarm, and keeps bad commands as errors', async () => {
    const seen: string[] = [];
    const d = device('smoke-json', { heartbeatMs: 0, onCommand: (c) => seen.push(c.command?.cmd ?? 'bad') });
    await d.start();
    await d.alarm();
    const down = `dev/${d.deviceId}/down`;
    await watcher.publishAsync(down, JSON.stringify({ cmd: 'ack', incident: 'inc-1', text: '网格员王已确认' }), { qos: 1 });
    await watcher.publishAsync(down, JSON.stringify({ cmd: 'mute' }), { qos: 1 });
    await watcher.publishAsync(down, 'not json', { qos: 1 });
    await watcher.publishAsync(down, JSON.stringify({ cmd: 'reboot' }), { qos: 1 });
    await until('four commands', () => d.status.commands.length === 4);
    await until('the silenced report', () => readingsOf(d.deviceId).length === 2);
    expect(seen).toEqual(['ack', 'mute', 'bad', 'bad']);
    const [ack, , notJson, unknown] = d.status.commands;
    expect(ack?.command).toEqual({ cmd: 'ack', incident: 'inc-1', text: '网格员王已确认' });
    expect(notJson?.error).toBeDefined();
    expect(unknown?.error).toBeDefined();
    expect(readingsOf(d.deviceId)[1]).toMatchObject({ events: ['silenced'], state: { smoke: true, silenced: true } });
  });

  it('start() fails with the CONNACK code on bad credentials', async () => {
    const d = device('smoke-json', { heartbeatMs: 0, secret: 'wrong' });
    const err = await d.start().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(SimulatorError);
    expect((err as SimulatorError).code).toBe('SIM_ERR_CONNECT');
    expect((err as Error).message).toMatch(/CONNACK 4/);
    expect(d.status.connection).toBe('stopped');
  });

  it('start() fails when nothing listens', async () => {
    const free = createServer();
    await new Promise<void>((resolve) => free.listen(0, '127.0.0.1', resolve));
    const port = (free.address() as AddressInfo).port;
    await new Promise<void>((resolve) => free.close(() => resolve()));
    const d = device('smoke-json', { heartbeatMs: 0, url: `mqtt://127.0.0.1:${port}` });
    await expect(d.start()).rejects.toMatchObject({ code: 'SIM_ERR_CONNECT' });
  });
});

describe('runLoad', () => {
  it('20 devices, 500 msg/s for 2 s at QoS 1: the ledger of acked messages is what the broker delivered', async () => {
    const load: LoadDevice[] = Array.from({ length: 20 }, (_, i) => {
      const model = MQTT[i % MQTT.length] as MqttModel;
      const id = `LOAD-${model.id}-${i}`;
      deviceModels.set(id, model);
      return { id, secret: `secret-${id}`, model };
    });
    const acks: string[] = [];
    const before = uplinks.length;
    const summary = await runLoad({
      url,
      devices: load,
      connections: 20,
      ratePerSecond: 500,
      durationMs: 2_000,
      qos: 1,
      mix: { 'smoke-json': 1, 'smoke-ctw': 1, 'pager-json': 1 },
      onAck: (e) => acks.push(`${e.deviceId}@${e.ts}`),
    });

    expect(summary).toMatchObject({ connections: 20, connectFailures: 0, sent: 1000, acked: 1000, unacked: 0, errors: 0, throttled: 0, aborted: false });
    expect(summary.ratePerSecond).toBeGreaterThan(400);
    expect(summary.ratePerSecond).toBeLessThan(600);
    expect(summary.latencyMs).toBeDefined();
    expect(summary.latencyMs?.p50).toBeLessThanOrEqual(summary.latencyMs?.p99 ?? 0);
    expect(summary.latencyMs?.p99).toBeLessThanOrEqual(summary.latencyMs?.max ?? 0);
    expect(Object.values(summary.sentByModel).reduce((a, b) => a + b, 0)).toBe(1000);
    expect(Object.keys(summary.sentByModel).sort()).toEqual(['pager-json', 'smoke-ctw', 'smoke-json']);

    const ledger = summary.ledger;
    expect(ledger.entries()).toHaveLength(1000);
    expect(ledger.unacked()).toEqual([]);
    const ackedKeys = ledger.ackedKeys();
    expect(ackedKeys.size).toBe(1000);
    expect(new Set(acks)).toEqual(ackedKeys);
    // Sequence numbers per device run 0…n-1 without a gap.
    const seqs = new Map<string, number[]>();
    for (const e of ledger.entries()) seqs.set(e.deviceId, [...(seqs.get(e.deviceId) ?? []), e.seq]);
    for (const list of seqs.values()) expect(list).toEqual(list.map((_, i) => i));

    // What the watcher decoded: the same (device, ts) keys, nothing missing, nothing extra.
    await until('every load message at the watcher', () => uplinks.length - before >= 1000);
    const delivered = new Set(uplinks.slice(before).map((u) => `${u.deviceId}@${u.reading.ts}`));
    expect(delivered).toEqual(ackedKeys);
  });

  it('stops early on abort, drains, and counts unacked messages when nothing answers', async () => {
    // A broker that never PUBACKs dev/+/up (it holds authorizePublish).
    const silent = await Aedes.createBroker({
      authorizePublish(_client, packet, done) {
        if (packet.topic.endsWith('/up')) return;
        done(null);
      },
    });
    const held = new Set<Socket>();
    const srv = createServer((s) => {
      held.add(s);
      silent.handle(s);
    });
    await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
    const silentUrl = `mqtt://127.0.0.1:${(srv.address() as AddressInfo).port}`;
    try {
      const model = modelOf('smoke-json');
      const controller = new AbortController();
      setTimeout(() => controller.abort(), 300);
      const summary = await runLoad({
        url: silentUrl,
        devices: [{ id: 'SILENT-1', secret: 's', model }],
        ratePerSecond: 100,
        durationMs: 10_000,
        qos: 1,
        drainMs: 200,
        maxInFlight: 10,
        signal: controller.signal,
      });
      expect(summary.aborted).toBe(true);
      expect(summary.acked).toBe(0);
      expect(summary.sent).toBe(10);
      expect(summary.unacked).toBe(10);
      expect(summary.throttled).toBeGreaterThan(0);
      expect(summary.errors).toBe(0);
      expect(summary.ledger.unacked()).toHaveLength(10);
    } finally {
      for (const s of held) s.destroy();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
      await new Promise<void>((resolve) => srv.close(() => resolve()));
    }
  });
});
