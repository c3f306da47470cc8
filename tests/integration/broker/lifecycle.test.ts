import { createServer, connect as netConnect } from 'node:net';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { createDeviceBroker, type DeviceBrokerDeps } from '../../../gateway/broker/index.js';
import { closed, connectDevice, endAllClients, startHarness, waitFor, type TestDevice } from './harness.js';

const D: TestDevice = { id: 'SMK-LC', model: 'smoke-json', secret: 'lc' };

const baseDeps = (port: number): DeviceBrokerDeps => ({
  listen: { host: '127.0.0.1', port },
  maxPayloadBytes: 16_384,
  operators: [],
  devices: { get: () => undefined, verify: () => Promise.resolve(false) },
  isMqttModel: () => true,
  onDeviceMessage: () => Promise.resolve(),
  onPresence: () => undefined,
  logger: pino({ level: 'silent' }),
});

describe('lifecycle', () => {
  it('the constructor opens nothing; start() listens; stop() closes listeners and connections', async () => {
    const h = await startHarness({ devices: [D] });
    const c = await connectDevice(h.port, D);
    // A socket that never sends CONNECT is not an aedes client yet: stop() must close it too.
    const raw = netConnect({ host: '127.0.0.1', port: h.port });
    await new Promise((r) => raw.once('connect', r));
    const rawClosed = new Promise((r) => raw.once('close', r));
    const cClosed = closed(c);
    const presenceBefore = h.presence.length;
    await h.stop();
    await cClosed;
    await rawClosed;
    // Stopping the gateway does not announce its devices offline.
    expect(h.presence.length).toBe(presenceBefore);
    await expect(connectDevice(h.port, D, { connectTimeout: 1_000 })).rejects.toThrow();
    await endAllClients();
    await h.stop(); // idempotent
  });

  it('start() fails with BROKER_ERR_LISTEN when the port is taken, and leaves nothing open', async () => {
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen({ host: '127.0.0.1', port: 0 }, r));
    const port = (blocker.address() as { port: number }).port;
    const broker = createDeviceBroker(baseDeps(port));
    await expect(broker.start()).rejects.toMatchObject({ code: 'BROKER_ERR_LISTEN' });
    await broker.stop();
    await new Promise((r) => blocker.close(r));
  });

  it('start() fails with BROKER_ERR_TLS for a missing certificate file', async () => {
    const broker = createDeviceBroker({ ...baseDeps(0), tls: { port: 0, cert: '/nonexistent/gw.pem', key: '/nonexistent/gw.key' } });
    await expect(broker.start()).rejects.toMatchObject({ code: 'BROKER_ERR_TLS' });
  });

  it('publishDown before start() is a BROKER_ERR_STATE, and options are checked eagerly', async () => {
    const broker = createDeviceBroker(baseDeps(0));
    await expect(broker.publishDown('x', Buffer.from('{}'))).rejects.toMatchObject({ code: 'BROKER_ERR_STATE' });
    expect(() => createDeviceBroker({ ...baseDeps(0), maxPayloadBytes: 0 })).toThrow(/maxPayloadBytes/);
  });

  it('counts connected clients', async () => {
    const h = await startHarness({ devices: [D] });
    expect(h.broker.clients()).toBe(0);
    const c = await connectDevice(h.port, D);
    await waitFor(() => h.broker.clients() === 1, 2_000, 'one client');
    expect(h.broker.stats().connected).toBe(1);
    c.end(true);
    await waitFor(() => h.broker.clients() === 0, 2_000, 'no client');
    await h.stop();
  });
});
