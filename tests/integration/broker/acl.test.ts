import type { MqttClient } from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { deviceTopics, localTopics } from '../../../devices/topics.js';
import {
  connectClient,
  connectDevice,
  endAllClients,
  publish,
  sleep,
  startHarness,
  subscribeGranted,
  waitFor,
  type Harness,
  type TestDevice,
} from './harness.js';

// SPEC §3 ACL: a device publishes dev/{id}/up and dev/{id}/status and subscribes dev/{id}/down;
// a refused publish is dropped and counted, a refused subscription is granted 0x80. Operators
// read the local republish trees only. The device role's whole matrix (every topic × publish /
// subscribe × QoS × retain) is tests/integration/security/acl-matrix.test.ts.
const A: TestDevice = { id: 'SMK-A', model: 'smoke-json', secret: 'secret-a' };
const B: TestDevice = { id: 'SMK-B', model: 'smoke-json', secret: 'secret-b' };
const OPERATOR = { username: 'local', password: 'op-pass' };

let h: Harness;

beforeAll(async () => {
  h = await startHarness({ devices: [A, B], operators: [OPERATOR] });
});
afterEach(endAllClients);
afterAll(() => h.stop());

function received(c: MqttClient): { topic: string; payload: string }[] {
  const got: { topic: string; payload: string }[] = [];
  c.on('message', (topic, payload) => got.push({ topic, payload: payload.toString() }));
  return got;
}

const operator = (clientId = 'tool'): Promise<MqttClient> =>
  connectClient(h.port, { clientId, username: OPERATOR.username, password: OPERATOR.password });

describe('device uplink routing', () => {
  it("a device's uplink reaches no subscriber (not even an operator)", async () => {
    const op = await operator();
    expect(await subscribeGranted(op, localTopics.readingsFilter)).toBe(1);
    const got = received(op);
    const a = await connectDevice(h.port, A);
    await publish(a, deviceTopics.up(A.id), '{"smoke":true,"battery":80}', 1);
    await sleep(100);
    expect(got).toEqual([]);
  });
});

describe('device downlink routing', () => {
  it('publishDown reaches the device on its own down topic only', async () => {
    const a = await connectDevice(h.port, A);
    const b = await connectDevice(h.port, B);
    expect(await subscribeGranted(a, deviceTopics.down(A.id))).toBe(1);
    expect(await subscribeGranted(b, deviceTopics.down(B.id))).toBe(1);
    const aGot = received(a);
    const bGot = received(b);
    await h.broker.publishDown(A.id, Buffer.from('{"cmd":"self_test"}'));
    await waitFor(() => aGot.length === 1, 2_000, 'downlink');
    expect(aGot[0]).toEqual({ topic: deviceTopics.down(A.id), payload: '{"cmd":"self_test"}' });
    await sleep(50);
    expect(bGot).toEqual([]);
  });
});

describe('operators', () => {
  it('subscribe to gridedge/readings/# and gridedge/incidents/# and receive publishLocal', async () => {
    const op = await operator();
    expect(await subscribeGranted(op, localTopics.readingsFilter)).toBe(1);
    expect(await subscribeGranted(op, localTopics.incidentsFilter, 0)).toBe(0);
    const got = received(op);
    await h.broker.publishLocal(localTopics.reading('smoke', A.id), '{"deviceId":"SMK-A"}');
    await h.broker.publishLocal(localTopics.incident('inc-1'), '{"id":"inc-1"}', { qos: 1 });
    await waitFor(() => got.length === 2, 2_000, 'local messages');
    expect(got).toEqual([
      { topic: 'gridedge/readings/smoke/SMK-A', payload: '{"deviceId":"SMK-A"}' },
      { topic: 'gridedge/incidents/inc-1', payload: '{"id":"inc-1"}' },
    ]);
  });

  it("get 0x80 for '#', 'gridedge/#', device topics and $SYS", async () => {
    const op = await operator();
    expect(await subscribeGranted(op, '#')).toBe(0x80);
    expect(await subscribeGranted(op, 'gridedge/#')).toBe(0x80);
    expect(await subscribeGranted(op, 'dev/+/up')).toBe(0x80);
    expect(await subscribeGranted(op, deviceTopics.down(A.id))).toBe(0x80);
    expect(await subscribeGranted(op, '$SYS/#')).toBe(0x80);
    expect(await subscribeGranted(op, 'gridedge/readings/smoke/+')).toBe(1);
  });

  it('may not publish anything: dropped, counted, still connected', async () => {
    const op = await operator();
    const a = await connectDevice(h.port, A);
    expect(await subscribeGranted(a, deviceTopics.down(A.id))).toBe(1);
    const aGot = received(a);
    const opGot = received(op);
    expect(await subscribeGranted(op, localTopics.readingsFilter)).toBe(1);
    const before = h.broker.stats().refused.acl_publish;
    const messagesBefore = h.messages.length;
    await publish(op, deviceTopics.down(A.id), '{"cmd":"mute"}', 1);
    await publish(op, deviceTopics.up(A.id), '{"smoke":true,"battery":1}', 1);
    await publish(op, localTopics.reading('smoke', A.id), '{}', 0);
    await waitFor(() => h.broker.stats().refused.acl_publish === before + 3, 2_000, 'acl_publish count');
    await sleep(100);
    expect(op.connected).toBe(true);
    expect(aGot).toEqual([]);
    expect(opGot).toEqual([]);
    expect(h.messages.length).toBe(messagesBefore);
  });

  it('publishLocal refuses topics outside the local trees', async () => {
    await expect(h.broker.publishLocal(deviceTopics.down(A.id), 'x')).rejects.toThrow(/local republish topics/);
  });
});
