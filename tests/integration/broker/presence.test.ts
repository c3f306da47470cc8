import type { MqttClient } from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { deviceTopics } from '../../../devices/topics.js';
import { closed, connectDevice, endAllClients, endClient, publish, sleep, startHarness, subscribeGranted, waitFor, type Harness, type TestDevice } from './harness.js';

// SPEC §3: dev/{id}/status is retained online/offline and devices set it as their will. The
// broker turns connects, disconnects, wills and status messages into onPresence transitions.
const D: TestDevice = { id: 'SMK-P1', model: 'smoke-json', secret: 'p1' };
const E: TestDevice = { id: 'SMK-P2', model: 'smoke-json', secret: 'p2' };

let h: Harness;

beforeAll(async () => {
  h = await startHarness({ devices: [D, E] });
});
afterEach(async () => {
  await endAllClients();
  // The broker sees the close a moment after the client: let its offline land before clearing.
  await waitFor(() => h.broker.clients() === 0, 2_000, 'all sessions closed');
  await sleep(20);
  h.presence.length = 0;
});
afterAll(() => h.stop());

const will = (id: string) => ({ topic: deviceTopics.status(id), payload: Buffer.from('offline'), qos: 1 as const, retain: true });
const events = (id: string) => h.presence.filter((p) => p.deviceId === id).map((p) => `${p.online ? 'online' : 'offline'}:${p.reason}`);

/** Kill the TCP connection without DISCONNECT, as a pager losing its 4G link does. */
function dropLink(c: MqttClient): Promise<void> {
  const done = closed(c);
  c.stream.destroy();
  return done;
}

describe('presence', () => {
  it('connect → online; a lost link → the will is published and the device is offline (reason will)', async () => {
    const c = await connectDevice(h.port, D, { will: will(D.id) });
    await waitFor(() => events(D.id).length === 1, 2_000, 'online');
    expect(events(D.id)).toEqual(['online:connect']);
    await dropLink(c);
    await waitFor(() => events(D.id).length === 2, 2_000, 'offline');
    expect(events(D.id)).toEqual(['online:connect', 'offline:will']);
    expect(h.broker.clients()).toBe(0);
  });

  it('a clean DISCONNECT → offline (reason disconnect), no will', async () => {
    const c = await connectDevice(h.port, D, { will: will(D.id) });
    await waitFor(() => events(D.id).length === 1, 2_000, 'online');
    await endClient(c);
    await waitFor(() => events(D.id).length === 2, 2_000, 'offline');
    expect(events(D.id)).toEqual(['online:connect', 'offline:disconnect']);
  });

  it('status messages from the device itself (reason status); invalid ones are refused', async () => {
    const c = await connectDevice(h.port, D);
    await publish(c, deviceTopics.status(D.id), 'offline', 1, true);
    await publish(c, deviceTopics.status(D.id), 'online', 1, true);
    await publish(c, deviceTopics.status(D.id), 'maybe', 1, true);
    await waitFor(() => h.broker.stats().refused.status_invalid === 1, 2_000, 'status_invalid');
    expect(events(D.id)).toEqual(['online:connect', 'offline:status', 'online:status']);
    expect(c.connected).toBe(true);
  });

  it('a will on another topic or saying "online" is not published', async () => {
    const before = h.broker.stats().refused.will_refused;
    const c = await connectDevice(h.port, D, { will: { topic: deviceTopics.status(E.id), payload: Buffer.from('offline'), qos: 1, retain: true } });
    const e = await connectDevice(h.port, E);
    await waitFor(() => events(E.id).length === 1, 2_000, 'E online');
    await dropLink(c);
    await waitFor(() => events(D.id).length === 2, 2_000, 'D offline');
    expect(events(D.id)).toEqual(['online:connect', 'offline:disconnect']);
    expect(events(E.id)).toEqual(['online:connect']); // D's forged will did not take E offline
    expect(h.broker.stats().refused.will_refused).toBe(before + 1);
    expect(e.connected).toBe(true);
  });

  it('a second connection with the same client id takes over; the old session announces nothing', async () => {
    const first = await connectDevice(h.port, D, { will: will(D.id) });
    await waitFor(() => events(D.id).length === 1, 2_000, 'online');
    const superseded = h.broker.stats().refused.will_superseded;
    const firstClosed = closed(first);

    const second = await connectDevice(h.port, D, { will: will(D.id) });
    await firstClosed; // MQTT-3.1.4-2: the broker closed the old connection
    expect(await subscribeGranted(second, deviceTopics.down(D.id))).toBe(1);
    await sleep(100);
    expect(events(D.id)).toEqual(['online:connect']);
    expect(h.broker.stats().refused.will_superseded).toBe(superseded + 1);
    expect(h.broker.clients()).toBe(1);

    // The new session works: uplink and downlink.
    const got: string[] = [];
    second.on('message', (_t, p) => got.push(p.toString()));
    await h.broker.publishDown(D.id, Buffer.from('{"cmd":"mute"}'));
    await publish(second, deviceTopics.up(D.id), '{"smoke":false,"battery":90}', 1);
    await waitFor(() => got.length === 1, 2_000, 'downlink to the new session');
    expect(second.connected).toBe(true);

    // And when the new one goes, the device is offline.
    await dropLink(second);
    await waitFor(() => events(D.id).length === 2, 2_000, 'offline');
    expect(events(D.id)).toEqual(['online:connect', 'offline:will']);
  });

  it('takeover while the old TCP connection is half-dead (no FIN reached the broker)', async () => {
    // The old session's socket is still open on the broker side when the device reconnects from
    // a new 4G address: the typical NAT-rebinding case.
    const first = await connectDevice(h.port, D, { will: will(D.id), keepalive: 0 });
    await waitFor(() => events(D.id).length === 1, 2_000, 'online');
    first.stream.pause(); // it reads nothing any more
    const second = await connectDevice(h.port, D, { will: will(D.id) });
    await sleep(200);
    expect(events(D.id)).toEqual(['online:connect']);
    expect(second.connected).toBe(true);
    await endClient(second);
    await waitFor(() => events(D.id).length === 2, 2_000, 'offline');
    expect(events(D.id)).toEqual(['online:connect', 'offline:disconnect']);
  });
});
