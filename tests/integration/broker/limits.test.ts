import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { deviceTopics } from '../../../devices/topics.js';
import { closed, connectDevice, endAllClients, publish, sleep, startHarness, type Harness, type TestDevice } from './harness.js';

// SPEC §3: payloads over 16 KiB are rejected and counted; a per-device rate limit of 20/s with a
// burst of 100 marks messages over it (the pipeline drops telemetry, never alarms).
const A: TestDevice = { id: 'SMK-L1', model: 'smoke-json', secret: 'l1' };
const B: TestDevice = { id: 'PGR-L2', model: 'pager-json', secret: 'l2' };
const C: TestDevice = { id: 'SMK-L3', model: 'smoke-json', secret: 'l3' };

let h: Harness;

beforeAll(async () => {
  h = await startHarness({ devices: [A, B, C], maxPayloadBytes: 16_384 });
});
afterEach(endAllClients);
afterAll(() => h.stop());

describe('payload size', () => {
  it('a payload over maxPayloadBytes is dropped and counted too_large; the connection stays', async () => {
    const c = await connectDevice(h.port, A);
    const seen = h.messages.length;
    await publish(c, deviceTopics.up(A.id), Buffer.alloc(16_385, 0x20), 1);
    await publish(c, deviceTopics.up(A.id), Buffer.alloc(16_384, 0x20), 1); // exactly the limit is fine
    expect(h.broker.stats().refused.too_large).toBe(1);
    expect(h.messages.length).toBe(seen + 1);
    expect(h.messages.at(-1)?.payload.length).toBe(16_384);
    expect(c.connected).toBe(true);
  });

  it('a packet far over the limit closes the connection before it is buffered', async () => {
    const c = await connectDevice(h.port, A);
    const done = closed(c);
    c.publish(deviceTopics.up(A.id), Buffer.alloc(4 * 1024 * 1024, 0x20), { qos: 1 });
    await done;
    expect(h.broker.stats().refused.packet_too_large).toBe(1);
    // Another device is unaffected.
    const b = await connectDevice(h.port, B);
    await publish(b, deviceTopics.up(B.id), '{"event":"heartbeat"}', 1);
  });
});

describe('rate limit', () => {
  it('marks messages over the bucket overLimit and counts them, but hands every one on', async () => {
    const c = await connectDevice(h.port, C);
    const before = h.messages.filter((m) => m.device.id === C.id).length;
    const overBefore = h.broker.stats().refused.over_limit;
    for (let i = 0; i < 150; i++) c.publish(deviceTopics.up(C.id), `{"smoke":false,"battery":80,"seq":${i}}`, { qos: 0 });
    await publish(c, deviceTopics.up(C.id), '{"smoke":true,"battery":80}', 1);
    const mine = h.messages.filter((m) => m.device.id === C.id).slice(before);
    expect(mine.length).toBe(151); // nothing dropped by the broker
    const over = mine.filter((m) => m.overLimit).length;
    // The burst is 100; a few tokens refill while 151 messages arrive.
    expect(over).toBeGreaterThanOrEqual(40);
    expect(over).toBeLessThanOrEqual(51);
    expect(mine.at(-1)?.overLimit).toBe(true); // even the QoS 1 alarm: the pipeline keeps alarms
    expect(h.broker.stats().refused.over_limit - overBefore).toBe(over);
  });
});

describe('fairness', () => {
  it("a flood of QoS 0 from one device does not starve another device's QoS 1", async () => {
    const flooder = await connectDevice(h.port, A);
    const pager = await connectDevice(h.port, B);
    let flooding = true;
    let sent = 0;
    const flood = (async () => {
      const payload = '{"smoke":false,"battery":80}';
      while (flooding) {
        for (let i = 0; i < 200; i++) flooder.publish(deviceTopics.up(A.id), payload, { qos: 0 });
        sent += 200;
        await new Promise((r) => setImmediate(r));
      }
    })();
    await sleep(100); // the flood is under way
    const latencies: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      await publish(pager, deviceTopics.up(B.id), '{"event":"sos","battery":50}', 1);
      latencies.push(performance.now() - t0);
    }
    flooding = false;
    await flood;
    const floodSeen = h.messages.filter((m) => m.device.id === A.id).length;
    console.log(`flood: ${sent} QoS 0 sent, ${floodSeen} handled so far; SOS PUBACK latencies (ms): ${latencies.map((l) => l.toFixed(1)).join(', ')}`);
    expect(sent).toBeGreaterThan(1_000);
    // A loose bound: the point is "not starved", not a benchmark.
    for (const l of latencies) expect(l).toBeLessThan(2_000);
  });
});
