// Issue 8 item 2, MQTT payloads: mutated fixtures of every MQTT model through the real pipeline
// (an in-process gateway: real store, real broker). Each input ends as a stored reading, a
// recognised resend or a counted rejection with a dead letter; nothing throws out of the pipeline,
// and a good reading sent after the garbage is stored. tests/unit/devices/mqtt-models.test.ts
// already fuzzes the codecs alone; this is the path behind them.
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MODELS } from '../../devices/catalogue.js';
import { DEVICE_ERRORS } from '../../devices/errors.js';
import { fixtureBytes, loadFixtures } from '../../devices/fixtures.js';
import { deviceTopics } from '../../devices/topics.js';
import { connectAsDevice, makeDevices, mqttModel, startGatewayInProcess, writeGatewaySite, type InProcessGateway, type TestDevice } from '../helpers/gateway.js';
import { mutationOf, nested, MUTATION_CLASSES, type MutationClass } from './mutate.js';

/** Property runs per model; each run sends 1–12 mutated payloads at once. 100 runs ≈ 650 payloads per model. */
const NUM_RUNS = 100;
const MAX_PAYLOAD = 16_384;

const devices = makeDevices('FZP', 3); // smoke-json, smoke-ctw, pager-json
let gw: InProcessGateway;
const classCounts = Object.fromEntries(MUTATION_CLASSES.map((c) => [c, 0])) as Record<MutationClass, number>;
const tally = { accepted: 0, duplicates: 0, rejected: {} as Record<string, number> };

beforeAll(async () => {
  // The rate limit out of the way: over-limit telemetry is dropped by design, which is not what is tested here.
  const site = await writeGatewaySite({ devices, rateLimit: { perSecond: 100_000, burst: 100_000 } });
  gw = await startGatewayInProcess(site, { logLevel: 'warn' });
});
afterAll(async () => {
  await gw?.stop();
  // The figures for docs/RELIABILITY.md.
  console.info(`payload fuzz: cases per mutation class ${JSON.stringify(classCounts)}; outcomes ${JSON.stringify(tally)}`);
});

interface Totals {
  accepted: number;
  rejected: number;
  duplicates: number;
  dropped: number;
  deadLetters: number;
  reasons: Record<string, number>;
}

function totals(): Totals {
  gw.gateway.store.flush();
  const s = gw.gateway.pipeline.stats();
  const sum = (r: Readonly<Record<string, number>>): number => Object.values(r).reduce((a, b) => a + b, 0);
  return {
    accepted: sum(s.accepted),
    rejected: sum(s.rejected),
    duplicates: s.duplicates,
    dropped: s.droppedOverLimit,
    deadLetters: sum(gw.gateway.store.deadLetterCounts()),
    reasons: { ...s.rejected },
  };
}

/** Every input accounted for exactly once; every rejection a catalogued device error with its dead letter. */
function expectAccounted(before: Totals, after: Totals, n: number): void {
  const rejected = after.rejected - before.rejected;
  expect(after.accepted - before.accepted + rejected + (after.duplicates - before.duplicates) + (after.dropped - before.dropped)).toBe(n);
  expect(after.deadLetters - before.deadLetters).toBe(rejected);
  for (const reason of Object.keys(after.reasons)) {
    // ING_ERR_INVALID_READING would be a codec that produced a reading its own schema refuses.
    expect(Object.keys(DEVICE_ERRORS), `rejection reason ${reason}`).toContain(reason);
  }
}

function sampleFor(d: TestDevice, ts: number) {
  return d.model === 'pager-json' ? { ts, events: ['sos'] } : { ts, metrics: { battery_pct: 90 }, state: { smoke: false } };
}

/** A good reading over MQTT QoS 1 after the garbage: PUBACKed, and in the store. */
async function expectGoodReadingStored(d: TestDevice, ts: number): Promise<void> {
  const client = await connectAsDevice(gw.url, d);
  await client.publishAsync(deviceTopics.up(d.id), mqttModel(d.model).encode(sampleFor(d, ts)), { qos: 1 });
  const stored = gw.gateway.store.queryReadings({ deviceId: d.id, from: ts, to: ts });
  expect(stored.map((r) => r.reading.ts)).toEqual([ts]);
  await client.endAsync();
}

describe('mutated payloads of every MQTT model through the pipeline', () => {
  const mqttIds = [...MODELS.values()].filter((m) => m.transport === 'mqtt').map((m) => m.id);

  it('the catalogue has the three MQTT models this file covers', () => {
    expect(mqttIds.sort()).toEqual(devices.map((d) => d.model).sort());
  });

  it.each(devices.map((d) => [d.model, d] as const))('%s: a reading, a resend or a counted dead letter; never a throw', async (_model, d) => {
    const device = gw.registry.get(d.id);
    if (!device) throw new Error(`${d.id} not registered`);
    const seeds = loadFixtures(d.model)
      .filter((f) => !('stream' in f.input))
      .map((f) => fixtureBytes(f.input));
    expect(seeds.length).toBeGreaterThan(3);
    const payloads = fc.array(
      fc.constantFrom(...seeds).chain((seed) => mutationOf(seed, MAX_PAYLOAD)),
      { minLength: 1, maxLength: 12 },
    );
    await fc.assert(
      fc.asyncProperty(payloads, async (cases) => {
        const before = totals();
        const receivedAt = Date.now();
        const outcomes = await Promise.allSettled(
          cases.map((c) => gw.gateway.pipeline.acceptMqtt({ device, payload: c.bytes, qos: 1, receivedAt, overLimit: false })),
        );
        expect(outcomes.filter((o) => o.status === 'rejected')).toEqual([]);
        const after = totals();
        expectAccounted(before, after, cases.length);
        tally.accepted += after.accepted - before.accepted;
        tally.duplicates += after.duplicates - before.duplicates;
        for (const [r, n] of Object.entries(after.reasons)) tally.rejected[r] = (tally.rejected[r] ?? 0) + n - (before.reasons[r] ?? 0);
        for (const c of cases) for (const k of c.classes) classCounts[k]++;
      }),
      { numRuns: NUM_RUNS },
    );
    await expectGoodReadingStored(d, Date.now() + 1);
  });
});

describe('garbage over the real broker (QoS 1)', () => {
  it('every class, deep nesting at the size limit included, is acknowledged and dead-lettered; the device stays connected and its next reading is stored', async () => {
    const d = devices[0] as TestDevice;
    const seed = fixtureBytes(loadFixtures(d.model)[0]?.input ?? { text: '{}' });
    const generated = fc.sample(mutationOf(seed, MAX_PAYLOAD), { numRuns: 60, seed: 8 }).map((m) => m.bytes);
    const half = MAX_PAYLOAD / 2;
    const prefix = '{"smoke":';
    const suffix = ',"battery":50}';
    const depth = Math.floor((MAX_PAYLOAD - prefix.length - suffix.length) / 2);
    const handmade = [
      Buffer.from(nested(half)), // 8192 deep, exactly 16 KiB
      Buffer.from(prefix + nested(depth) + suffix),
      Buffer.from('['.repeat(MAX_PAYLOAD)),
      Buffer.from('{"a":'.repeat(Math.floor(MAX_PAYLOAD / 5))),
      Buffer.from([0xc0, 0xaf, 0x7b, 0x7d]),
      Buffer.from('{"smoke":true,"battery":1e309}'),
      Buffer.from('{"smoke":true,"battery":-0,"ts":18446744073709551616}'),
      Buffer.from('\u0000'),
      Buffer.alloc(0),
    ];
    for (const b of handmade) expect(b.length).toBeLessThanOrEqual(MAX_PAYLOAD);
    const payloads = [...handmade, ...generated];

    const client = await connectAsDevice(gw.url, d);
    const before = totals();
    const refusedBefore = gw.gateway.broker.stats().refused.too_large;
    for (const p of payloads) await client.publishAsync(deviceTopics.up(d.id), p, { qos: 1 });
    expect(client.connected).toBe(true);
    expect(gw.gateway.broker.stats().refused.too_large).toBe(refusedBefore);
    const after = totals();
    expectAccounted(before, after, payloads.length);
    // The handmade ones are all garbage.
    expect(after.rejected - before.rejected).toBeGreaterThanOrEqual(handmade.length);
    await client.endAsync();
    await expectGoodReadingStored(d, Date.now() + 2);
  });

  it('V8 parses JSON nesting iteratively: 1,000,000 levels (60 times what 16 KiB can hold) do not overflow the stack', () => {
    // Why the 16 KiB nesting above cannot crash the gateway: JSON.parse does not recurse on the
    // native stack. (JSON.stringify does: nothing on the payload path stringifies a parsed payload;
    // the dead letter keeps the raw bytes.)
    const depth = 1_000_000;
    const value = JSON.parse(nested(depth)) as unknown[];
    let d = 0;
    for (let v: unknown = value; Array.isArray(v); v = v[0]) d++;
    expect(d).toBe(depth);
  });
});
