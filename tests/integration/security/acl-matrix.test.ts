import type { MqttClient, Packet } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deviceTopics, localTopics, uplinkTopics } from '../../../devices/topics.js';
import { connectClient, connectDevice, endAllClients, publish, startHarness, subscribeGranted, waitFor, type Harness, type TestDevice } from '../broker/harness.js';

// The device role's topic ACL (SPEC §3), exhaustively: every kind of topic a device could aim at,
// × publish / subscribe × QoS 0 / 1 (and retained), each against the real broker. The expected
// outcome comes from the table below, which is SPEC §3 written out: a device publishes its own
// `dev/{id}/up` and `dev/{id}/status`, subscribes its own `dev/{id}/down` (exactly: no wildcard,
// even one that would match only it), and nothing else. A refused publish is dropped (no one
// receives it, nothing is retained) and counted; a refused subscription is granted 0x80 and
// counted; the connection stays either way.

const A: TestDevice = { id: 'SMK-ACL-A', model: 'smoke-json', secret: 'acl-secret-a' };
const B: TestDevice = { id: 'PGR-ACL-B', model: 'pager-json', secret: 'acl-secret-b' };
const OPERATOR = { username: 'acl-operator', password: 'acl-operator-pass' };
const PREFIX = 'city/110101013';

const SMOKE = '{"smoke":false,"battery":90}';

type PublishOutcome = 'up' | 'status' | 'refused';
/** [what, topic, payload, outcome] */
const PUBLISH_TABLE: readonly (readonly [string, string, string, PublishOutcome])[] = [
  ['own up', deviceTopics.up(A.id), SMOKE, 'up'],
  ['own status', deviceTopics.status(A.id), 'online', 'status'],
  ['own down (the gateway’s to write)', deviceTopics.down(A.id), '{"cmd":"mute"}', 'refused'],
  ['another device’s up', deviceTopics.up(B.id), '{"event":"sos"}', 'refused'],
  ['another device’s status', deviceTopics.status(B.id), 'offline', 'refused'],
  ['another device’s down (a forged command)', deviceTopics.down(B.id), '{"cmd":"mute"}', 'refused'],
  ['a channel that is not one', `dev/${A.id}/cmd`, '{}', 'refused'],
  ['below its own up', `${deviceTopics.up(A.id)}/x`, SMOKE, 'refused'],
  ['its own id level only', `dev/${A.id}`, SMOKE, 'refused'],
  ['a local reading (operators’ tree)', localTopics.reading('smoke', A.id), '{}', 'refused'],
  ['a local incident (operators’ tree)', localTopics.incident('inc-1'), '{}', 'refused'],
  ['gridedge root', 'gridedge/anything', '{}', 'refused'],
  ['$SYS', '$SYS/broker/clients/connected', '1', 'refused'],
  // aedes #597: a "new client" announcement from another broker id makes aedes close that client.
  ['$SYS new-client announcement naming another device (aedes #597)', '$SYS/forged-broker/new/clients', B.id, 'refused'],
  ['the city’s command topic', uplinkTopics.gatewayCmd(PREFIX, 'gw-test'), '{}', 'refused'],
  ['the city’s incident topic', uplinkTopics.incident(PREFIX, '110101013001002', 'x'), '{}', 'refused'],
  ['an unrelated topic', 'foo/bar', 'x', 'refused'],
  ['case-shifted own up (topics are case-sensitive)', `DEV/${A.id}/UP`, SMOKE, 'refused'],
];

/** [what, filter, allowed] */
const SUBSCRIBE_TABLE: readonly (readonly [string, string, boolean])[] = [
  ['own down', deviceTopics.down(A.id), true],
  ['own up', deviceTopics.up(A.id), false],
  ['own status', deviceTopics.status(A.id), false],
  ['own tree', `dev/${A.id}/#`, false],
  ['own id, one level', `dev/${A.id}/+`, false],
  ['every device’s down', 'dev/+/down', false],
  ['every device’s up', 'dev/+/up', false],
  ['every device’s status', 'dev/+/status', false],
  ['another device’s down', deviceTopics.down(B.id), false],
  ['another device’s up', deviceTopics.up(B.id), false],
  ['another device’s status', deviceTopics.status(B.id), false],
  ['own down behind a wildcard first level', `+/${A.id}/down`, false],
  ['everything', '#', false],
  ['every one-level topic', '+', false],
  ['three levels of anything', '+/+/+', false],
  ['the dev tree', 'dev/#', false],
  ['gridedge tree', 'gridedge/#', false],
  ['local readings (operators only)', localTopics.readingsFilter, false],
  ['local incidents (operators only)', localTopics.incidentsFilter, false],
  ['one local reading', localTopics.reading('smoke', A.id), false],
  ['$SYS tree', '$SYS/#', false],
  ['a $SYS topic', '$SYS/broker/clients/connected', false],
  ['the city’s command topic', uplinkTopics.gatewayCmd(PREFIX, 'gw-test'), false],
  ['an unrelated topic', 'foo/bar', false],
];

let h: Harness;
let a: MqttClient;
/** Witnesses: whatever they receive other than a fence is a leak. */
let bClient: MqttClient;
let op: MqttClient;
const bGot: string[] = [];
const opGot: string[] = [];

beforeAll(async () => {
  h = await startHarness({ devices: [A, B], operators: [OPERATOR] });
  a = await connectDevice(h.port, A);
  bClient = await connectDevice(h.port, B);
  expect(await subscribeGranted(bClient, deviceTopics.down(B.id))).toBe(1);
  bClient.on('message', (topic, payload) => bGot.push(`${topic} ${payload.toString()}`));
  op = await connectClient(h.port, { clientId: 'acl-tool', username: OPERATOR.username, password: OPERATOR.password });
  expect(await subscribeGranted(op, localTopics.readingsFilter)).toBe(1);
  expect(await subscribeGranted(op, localTopics.incidentsFilter)).toBe(1);
  op.on('message', (topic, payload) => opGot.push(`${topic} ${payload.toString()}`));
});
afterAll(async () => {
  await endAllClients();
  await h.stop();
});

/** Everything routed before this has reached the witnesses once they received this. */
async function fence(tag: string): Promise<void> {
  const marker = `fence-${tag}`;
  await h.broker.publishDown(B.id, Buffer.from(marker));
  await h.broker.publishLocal(localTopics.incident(marker), marker);
  await waitFor(() => bGot.some((m) => m.endsWith(marker)) && opGot.some((m) => m.endsWith(marker)), 10_000, `fence ${tag}`);
}

describe('device publish matrix (SPEC §3)', () => {
  const cases = PUBLISH_TABLE.flatMap(([what, topic, payload, outcome]) =>
    ([0, 1] as const).flatMap((qos) => [false, true].map((retain) => ({ what, topic, payload, outcome, qos, retain }))),
  );

  it.each(cases)('$what ($topic) QoS $qos retain $retain → $outcome', async ({ topic, payload, outcome, qos, retain }) => {
    const before = h.broker.stats();
    const messagesBefore = h.messages.length;
    const tagged = outcome === 'up' ? `{"smoke":false,"battery":90,"seq":${messagesBefore}}` : payload;
    await publish(a, topic, tagged, qos, retain);
    if (outcome === 'refused') {
      await waitFor(() => h.broker.stats().refused.acl_publish === before.refused.acl_publish + 1, 10_000, 'acl_publish counted');
    } else if (outcome === 'up') {
      await waitFor(() => h.messages.length === messagesBefore + 1, 10_000, 'uplink handled');
      const m = h.messages.at(-1);
      expect(m?.device.id).toBe(A.id);
      expect(m?.qos).toBe(qos);
      expect(m?.payload.toString()).toBe(tagged);
    } else {
      await waitFor(() => h.broker.stats().accepted.status === before.accepted.status + 1, 10_000, 'status accepted');
    }
    const after = h.broker.stats();
    expect(after.refused.acl_publish - before.refused.acl_publish).toBe(outcome === 'refused' ? 1 : 0);
    expect(h.messages.length - messagesBefore).toBe(outcome === 'up' ? 1 : 0);
    expect(a.connected).toBe(true);
  });

  it('nothing refused reached anyone: not the other device, not an operator, not as a retained message', async () => {
    await fence('live');
    expect(bClient.connected).toBe(true); // not kicked by the forged $SYS announcement
    expect(bGot.filter((m) => !m.includes('fence-'))).toEqual([]);
    expect(opGot.filter((m) => !m.includes('fence-'))).toEqual([]);
    // B's presence never moved because of A's forged status.
    expect(h.presence.filter((p) => p.deviceId === B.id && p.reason === 'status')).toEqual([]);
    // Retained: late subscribers to everything they may read get only what the gateway published.
    const late = await connectClient(h.port, { clientId: 'acl-late-tool', username: OPERATOR.username, password: OPERATOR.password });
    const lateGot: string[] = [];
    late.on('message', (topic, payload) => lateGot.push(`${topic} ${payload.toString()}`));
    expect(await subscribeGranted(late, localTopics.readingsFilter)).toBe(1);
    expect(await subscribeGranted(late, localTopics.incidentsFilter)).toBe(1);
    const b2 = await connectDevice(h.port, B, { clean: true });
    const b2Got: string[] = [];
    // b2 took B's session over: it is the witness for B from now on.
    b2.on('message', (topic, payload) => {
      b2Got.push(`${topic} ${payload.toString()}`);
      bGot.push(`${topic} ${payload.toString()}`);
    });
    expect(await subscribeGranted(b2, deviceTopics.down(B.id))).toBe(1);
    await h.broker.publishDown(B.id, Buffer.from('fence-late'));
    await h.broker.publishLocal(localTopics.incident('fence-late'), 'fence-late');
    await waitFor(() => lateGot.length > 0 && b2Got.length > 0, 10_000, 'late fence');
    expect(lateGot).toEqual(['gridedge/incidents/fence-late fence-late']);
    expect(b2Got).toEqual([`${deviceTopics.down(B.id)} fence-late`]);
  });
});

describe('device subscribe matrix (SPEC §3)', () => {
  const cases = SUBSCRIBE_TABLE.flatMap(([what, filter, allowed]) => ([0, 1] as const).map((qos) => ({ what, filter, allowed, qos })));

  it.each(cases)('$what ($filter) QoS $qos → allowed $allowed', async ({ filter, allowed, qos }) => {
    const before = h.broker.stats().refused.acl_subscribe;
    const granted = await subscribeGranted(a, filter, qos);
    expect(granted).toBe(allowed ? qos : 0x80);
    expect(h.broker.stats().refused.acl_subscribe - before).toBe(allowed ? 0 : 1);
    expect(a.connected).toBe(true);
  });

  it('QoS 2 on its own down is granted (not 0x80) and delivered at QoS 1 (SPEC §3 speaks 0 and 1)', async () => {
    const granted = await new Promise<number | undefined>((resolve) => {
      const onPacket = (packet: Packet): void => {
        if (packet.cmd !== 'suback') return;
        a.removeListener('packetreceive', onPacket);
        resolve(packet.granted[0] as number | undefined);
      };
      a.on('packetreceive', onPacket);
      a.subscribe(deviceTopics.down(A.id), { qos: 2 }, () => undefined);
    });
    // aedes answers with the QoS requested even though the hook lowered it (lib/handlers/subscribe.js
    // takes `granted` before authorizeSubscribe runs): reported, see docs/SECURITY.md. What matters
    // is that it is not refused and that nothing arrives at QoS 2.
    expect([1, 2]).toContain(granted);
    const qos = await new Promise<number>((resolve) => {
      const onMessage = (topic: string, _payload: Buffer, packet: { qos: number }): void => {
        if (topic !== deviceTopics.down(A.id)) return;
        a.removeListener('message', onMessage);
        resolve(packet.qos);
      };
      a.on('message', onMessage);
      void h.broker.publishDown(A.id, Buffer.from('{"cmd":"self_test"}'));
    });
    expect(qos).toBe(1);
  });

  it('a refused subscription receives nothing: a command for B does not reach A, A’s own command does', async () => {
    const aGot: string[] = [];
    a.on('message', (topic, payload) => aGot.push(`${topic} ${payload.toString()}`));
    await h.broker.publishDown(B.id, Buffer.from('{"cmd":"self_test"}'));
    await h.broker.publishLocal(localTopics.reading('smoke', A.id), '{"deviceId":"SMK-ACL-A"}');
    await h.broker.publishDown(A.id, Buffer.from('{"cmd":"mute"}'));
    await waitFor(() => aGot.length > 0, 10_000, 'own command');
    await fence('subscribe');
    expect(aGot).toEqual([`${deviceTopics.down(A.id)} {"cmd":"mute"}`]);
  });

  it('the table is the whole matrix: every channel of both devices and every tree appears', () => {
    const topics = new Set([...PUBLISH_TABLE.map((r) => r[1]), ...SUBSCRIBE_TABLE.map((r) => r[1])]);
    for (const id of [A.id, B.id]) for (const ch of ['up', 'status', 'down'] as const) expect(topics.has(deviceTopics[ch](id))).toBe(true);
    for (const f of ['#', '+', 'gridedge/#', '$SYS/#', 'dev/+/down', localTopics.readingsFilter, localTopics.incidentsFilter]) expect(topics.has(f)).toBe(true);
    expect(PUBLISH_TABLE.filter((r) => r[3] !== 'refused').map((r) => r[1])).toEqual([deviceTopics.up(A.id), deviceTopics.status(A.id)]);
    expect(SUBSCRIBE_TABLE.filter((r) => r[2]).map((r) => r[1])).toEqual([deviceTopics.down(A.id)]);
  });
});
