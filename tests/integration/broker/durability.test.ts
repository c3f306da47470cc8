import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { deviceTopics } from '../../../devices/topics.js';
import type { DeviceMessage } from '../../../gateway/broker/index.js';
import { closed, connectDevice, endAllClients, publish, sleep, startHarness, waitFor, type Harness, type TestDevice } from './harness.js';

// DESIGN.md, store first: a QoS 1 PUBACK is written only after onDeviceMessage resolved (the
// ingest pipeline resolves it after the commit); a rejection means "not stored": no PUBACK.
const D: TestDevice = { id: 'PGR-1', model: 'pager-json', secret: 's1' };
const SOS = '{"event":"sos","battery":70}';

let h: Harness;

beforeAll(async () => {
  h = await startHarness({ devices: [D] });
});
afterEach(async () => {
  await endAllClients();
  h.setHandler((msg) => {
    h.messages.push(msg);
    return Promise.resolve();
  });
});
afterAll(() => h.stop());

describe('QoS 1: PUBACK after the handler', () => {
  it('a handler that takes 300 ms delays the PUBACK by 300 ms', async () => {
    let resolvedAt = 0;
    h.setHandler(async (msg) => {
      await sleep(300);
      h.messages.push(msg);
      resolvedAt = performance.now();
    });
    const c = await connectDevice(h.port, D);
    const t0 = performance.now();
    await publish(c, deviceTopics.up(D.id), SOS, 1);
    const pubackAt = performance.now();
    console.log(`PUBACK after ${(pubackAt - t0).toFixed(1)} ms with a 300 ms handler`);
    expect(pubackAt - t0).toBeGreaterThanOrEqual(290);
    expect(resolvedAt).toBeGreaterThan(0);
    expect(pubackAt).toBeGreaterThanOrEqual(resolvedAt);
    const m = h.messages.at(-1);
    expect(m?.payload.toString()).toBe(SOS);
    expect(m?.qos).toBe(1);
    expect(m?.overLimit).toBe(false);
  });

  it('a rejecting handler gets no PUBACK; the connection is closed and the device resends on reconnect', async () => {
    let attempts = 0;
    h.setHandler((msg) => {
      attempts++;
      if (attempts === 1) return Promise.reject(new Error('disk full'));
      h.messages.push(msg);
      return Promise.resolve();
    });
    const before = h.broker.stats().refused.handler_error;
    // A persistent session so that mqtt.js keeps the unacknowledged message and resends it.
    const c = await connectDevice(h.port, D, { clean: false, reconnectPeriod: 200 });
    let acked = false;
    let ackError: Error | undefined;
    c.publish(deviceTopics.up(D.id), SOS, { qos: 1 }, (err) => {
      if (err) ackError = err;
      else acked = true;
    });
    await closed(c);
    expect(acked).toBe(false);
    expect(h.broker.stats().refused.handler_error).toBe(before + 1);

    // mqtt.js reconnects and resends (it does not set DUP); the second attempt is stored and acknowledged.
    await waitFor(() => acked || ackError !== undefined, 5_000, 'PUBACK after reconnect');
    expect(ackError).toBeUndefined();
    expect(attempts).toBe(2);
    const m = h.messages.at(-1) as DeviceMessage;
    expect(m.payload.toString()).toBe(SOS);
    c.end(true);
  });

  it('a handler that throws synchronously is a rejection too, not a crash', async () => {
    h.setHandler(() => {
      throw new Error('boom');
    });
    const before = h.broker.stats().refused.handler_error;
    const c = await connectDevice(h.port, D);
    let acked = false;
    c.publish(deviceTopics.up(D.id), SOS, { qos: 1 }, (err) => (acked = !err));
    await closed(c);
    expect(acked).toBe(false);
    expect(h.broker.stats().refused.handler_error).toBe(before + 1);
  });
});

describe('QoS 2 (not in SPEC §3, but a device may send it)', () => {
  it('is handled like QoS 1: the PUBREC waits for the handler, the handler sees qos 1', async () => {
    h.setHandler(async (msg) => {
      await sleep(200);
      h.messages.push(msg);
    });
    const c = await connectDevice(h.port, D);
    const t0 = performance.now();
    await new Promise<void>((resolve, reject) => c.publish(deviceTopics.up(D.id), SOS, { qos: 2 }, (err) => (err ? reject(err) : resolve())));
    expect(performance.now() - t0).toBeGreaterThanOrEqual(190);
    expect(h.messages.at(-1)?.qos).toBe(1);
  });

  it('a refused QoS 2 publish completes its handshake and the connection stays', async () => {
    const c = await connectDevice(h.port, D);
    const before = h.broker.stats().refused.acl_publish;
    await new Promise<void>((resolve, reject) => c.publish('dev/OTHER/up', SOS, { qos: 2 }, (err) => (err ? reject(err) : resolve())));
    expect(h.broker.stats().refused.acl_publish).toBe(before + 1);
    expect(c.connected).toBe(true);
  });
});

describe('QoS 0', () => {
  it('is handed to the handler; a failing handler is logged and counted, never unhandled', async () => {
    const seen: DeviceMessage[] = [];
    h.setHandler((msg) => {
      seen.push(msg);
      return Promise.reject(new Error('store down'));
    });
    const before = h.broker.stats().refused.handler_error;
    const c = await connectDevice(h.port, D);
    await publish(c, deviceTopics.up(D.id), '{"event":"heartbeat"}', 0);
    await waitFor(() => h.broker.stats().refused.handler_error === before + 1, 2_000, 'handler_error');
    expect(seen[0]?.qos).toBe(0);
    expect(c.connected).toBe(true);
    expect(h.logs()).toContain('QoS 0, best effort');
  });
});
