// Issue 8 item 2, the serial lines: random bytes and valid frames in noise on both protocols,
// through the real serial path of an in-process gateway (socat ptys, gateway/serial, pipeline,
// store). Valid frames in noise are still found (Modbus: always, the CRC and the byte count make
// a false frame a 1-in-65536 event per candidate; RF: when the frame holds no 0x55 in bytes 2..10,
// the exception documented in tests/unit/devices/rf/frame-parser.test.ts); noise is counted;
// nothing crashes, the buses stay open.
import { writeFile, appendFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { model as pagerRf } from '../../devices/models/pager-rf/index.js';
import type { Reading } from '../../devices/reading.js';
import { stringifyDeviceCsv } from '../../gateway/registry/csv.js';
import { createModbusSlave, createSimulatedMeter, type ModbusSlaveSimulator } from '../../simulators/modbus-slave.js';
import { createRfEmitter, type RfEmitter } from '../../simulators/rf-emitter.js';
import { GRID, startGatewayInProcess, waitUntil, writeGatewaySite, type InProcessGateway } from '../helpers/gateway.js';
import { createPtyPair, type PtyPair } from '../helpers/pty.js';

/** Modbus replies wrapped in noise, and RF presses (one per pager and key) with noise around every word. */
const MODBUS_REPLIES = 30;
const RF_PAGERS = ['5A3C1', '1A2B3', '6B7C8', '2C3D4'] as const;
const RF_KEYS = [0x1, 0x2, 0x4, 0x8] as const;
const EVENT_OF_KEY: Record<number, string> = { 1: 'sos', 2: 'service_call', 4: 'family_call', 8: 'cancel' };
const METER = 'ELC-FZ01';
const pagerId = (rf: string): string => `RFP-${rf}`;

let modbusPair: PtyPair;
let rfPair: PtyPair;
let slave: ModbusSlaveSimulator;
let emitter: RfEmitter;
let gw: InProcessGateway;

/** What the Modbus slave does to its next replies: noise before and after, or noise instead. */
type Damage = { readonly kind: 'wrap'; readonly before: Buffer; readonly after: Buffer } | { readonly kind: 'replace'; readonly bytes: Buffer };
const plan: Damage[] = [];
const applied: Damage[] = [];

const noise = (max: number): fc.Arbitrary<Buffer> => fc.uint8Array({ minLength: 1, maxLength: max }).map((b) => Buffer.from(b));
/** RF noise that also looks like the start of a frame: `AA`, `AA A4` and truncated frames before the real one. */
const rfNoise = fc.oneof(
  noise(30),
  fc.tuple(noise(10), fc.uint8Array({ maxLength: 9 })).map(([n, tail]) => Buffer.concat([n, Buffer.from([0xaa, 0xa4]), tail])),
  fc.constant(Buffer.from([0xaa])),
);

beforeAll(async () => {
  [modbusPair, rfPair] = await Promise.all([createPtyPair(), createPtyPair()]);
  const site = await writeGatewaySite({ devices: [] });
  await appendFile(
    site.configPath,
    [
      'serial:',
      `  - { id: rs485-1, path: ${JSON.stringify(modbusPair.a)}, protocol: modbus-rtu, baudRate: 9600, pollInterval: 100ms, timeout: 300ms, retries: 2 }`,
      `  - { id: rf-1, path: ${JSON.stringify(rfPair.a)}, protocol: rf-bridge, baudRate: 19200 }`,
      '',
    ].join('\n'),
    'utf8',
  );
  await writeFile(
    join(site.dir, 'devices.csv'),
    stringifyDeviceCsv([
      { id: METER, model: 'elec-ers1', grid: GRID, building: '7', room: 'B1-3', bus: 'rs485-1', address: '1' },
      ...RF_PAGERS.map((rf, i) => ({ id: pagerId(rf), model: 'pager-rf', grid: GRID, building: '5', room: `30${i}`, bus: 'rf-1', rf })),
    ]),
    'utf8',
  );
  slave = createModbusSlave({
    path: modbusPair.b,
    baudRate: 9600,
    slaves: new Map([[1, createSimulatedMeter()]]),
    corrupt({ response }) {
      const d = plan.shift();
      if (!d) return undefined;
      applied.push(d);
      return d.kind === 'wrap' ? Buffer.concat([d.before, response, d.after]) : d.bytes;
    },
  });
  await slave.start();
  emitter = createRfEmitter({ path: rfPair.b });
  await emitter.start();
  gw = await startGatewayInProcess(site, { logLevel: 'warn' });
  await waitUntil('both buses open', () => gw.gateway.health().buses.every((b) => b.bus.state === 'open'), 20_000);
});

afterAll(async () => {
  await gw?.stop();
  await emitter?.stop();
  await slave?.stop();
  await rfPair?.dispose();
  await modbusPair?.dispose();
});

const bus = (id: string) => {
  const b = gw.gateway.health().buses.find((x) => x.bus.id === id);
  if (!b) throw new Error(`no bus ${id}`);
  return b;
};
const modbus = () => {
  const m = bus('rs485-1').modbus;
  if (!m) throw new Error('no modbus stats');
  return m;
};
const rf = () => {
  const r = bus('rf-1').rf;
  if (!r) throw new Error('no rf stats');
  return r;
};
const readings = (deviceId: string, from = 0): Reading[] => gw.gateway.store.queryReadings({ deviceId, from, limit: 10_000 }).map((r) => r.reading);

describe('Modbus RTU: replies in noise', () => {
  it(`${MODBUS_REPLIES} replies with random bytes before and after: every one is found, every noise byte counted`, async () => {
    await waitUntil('the meter is polled', () => modbus().pollsOk > 0, 20_000);
    const before = modbus();
    const damage = fc.sample(fc.tuple(noise(40), noise(20)), { numRuns: MODBUS_REPLIES, seed: 2 }).map(([b, a]): Damage => ({ kind: 'wrap', before: b, after: a }));
    applied.length = 0;
    plan.push(...damage);
    await waitUntil('all damage applied', () => plan.length === 0, 30_000);
    await waitUntil('the next polls', () => modbus().polls >= before.polls + MODBUS_REPLIES + 2, 20_000);
    const after = modbus();
    const noiseBytes = damage.reduce((n, d) => n + (d.kind === 'wrap' ? d.before.length + d.after.length : 0), 0);
    // Found despite the noise: no poll failed, nothing else was rejected; the bytes are garbage.
    expect(after.pollsFailed - before.pollsFailed).toBe(0);
    expect(after.rejected.crc - before.rejected.crc).toBe(0);
    expect(after.rejected.garbage_bytes - before.rejected.garbage_bytes).toBe(noiseBytes);
    expect(readings(METER).some((r) => r.events.includes('comm_fault'))).toBe(false);
    console.info(`serial noise: modbus ${MODBUS_REPLIES} replies in ${noiseBytes} noise bytes, polls ok ${after.pollsOk - before.pollsOk}`);
  });

  it('replies replaced by random bytes (never twice in a row): rejected and counted, the retry succeeds, no comm_fault', async () => {
    const before = modbus();
    const garbage = fc.sample(noise(80), { numRuns: 10, seed: 3 });
    // A clean reply between two garbage ones: each garbage reply costs one retry, never a whole poll.
    plan.push(...garbage.flatMap((bytes): Damage[] => [{ kind: 'replace', bytes }, { kind: 'wrap', before: Buffer.alloc(0), after: Buffer.alloc(0) }]));
    await waitUntil('all damage applied', () => plan.length === 0, 30_000);
    await waitUntil('the next polls', () => modbus().polls >= before.polls + garbage.length + 2, 20_000);
    const after = modbus();
    const rejected = (s: typeof after) => Object.entries(s.rejected).reduce((n, [k, v]) => (k === 'garbage_bytes' ? n : n + v), 0);
    expect(rejected(after) - rejected(before)).toBe(garbage.length);
    expect(after.pollsFailed - before.pollsFailed).toBe(0);
    expect(readings(METER).some((r) => r.events.includes('comm_fault'))).toBe(false);
    expect(bus('rs485-1').bus.state).toBe('open');
  });
});

describe('RF bridge: frames in noise', () => {
  it('the frames used have no 0x55 in bytes 2..10 (the documented limit of a checksum-less frame)', () => {
    for (const id of RF_PAGERS) for (const key of RF_KEYS) expect(pagerRf.encodeFrame(id, key).subarray(2, 11).indexOf(0x55)).toBe(-1);
  });

  it(`${RF_PAGERS.length * RF_KEYS.length} presses, each word wrapped in random bytes: every press is stored with its event, the noise is counted`, async () => {
    const before = rf();
    const from = Date.now();
    const presses = RF_PAGERS.flatMap((id) => RF_KEYS.map((key) => ({ id, key })));
    const noises = fc.sample(rfNoise, { numRuns: presses.length * 3 + 1, seed: 4 });
    let n = 0;
    for (const { id, key } of presses) {
      const frame = emitter.frame(id, key);
      for (let word = 0; word < 3; word++) {
        await emitter.write(Buffer.concat([noises[n++] ?? Buffer.alloc(0), frame]));
        await new Promise((r) => setTimeout(r, 15));
      }
    }
    await emitter.write(noises[n] ?? Buffer.alloc(0));
    const expected = presses.map((p) => `${pagerId(p.id)}:${EVENT_OF_KEY[p.key]}`).sort();
    const stored = (): string[] =>
      RF_PAGERS.flatMap((id) => readings(pagerId(id), from).flatMap((r) => r.events.filter((e) => Object.values(EVENT_OF_KEY).includes(e)).map((e) => `${r.deviceId}:${e}`))).sort();
    await waitUntil('every press stored', () => stored().length >= expected.length, 20_000);
    expect(stored()).toEqual(expected);
    const after = rf();
    expect(after.skippedBytes - before.skippedBytes).toBeGreaterThan(0);
    expect(after.rejectedCandidates - before.rejectedCandidates).toBeGreaterThan(0);
    expect(after.frames - before.frames).toBeGreaterThanOrEqual(presses.length * 3);
    console.info(`serial noise: rf ${presses.length} presses, ${after.skippedBytes - before.skippedBytes} noise bytes skipped, ${after.rejectedCandidates - before.rejectedCandidates} false candidates, ${after.unregisteredPresses - before.unregisteredPresses} unregistered presses from noise`);
  });

  it('64 KiB of random bytes, then an SOS: the SOS is stored, the bus stays open', async () => {
    const before = rf();
    const from = Date.now();
    const blob = Buffer.concat(fc.sample(fc.uint8Array({ minLength: 4096, maxLength: 4096 }), { numRuns: 16, seed: 5 }).map((b) => Buffer.from(b)));
    await emitter.write(blob);
    await waitUntil('the noise is read', () => rf().skippedBytes - before.skippedBytes >= blob.length / 2, 20_000);
    // A pager pressed again after the flood: a new press (more than the fold window after the last one).
    await new Promise((r) => setTimeout(r, 1_600));
    await emitter.press('5A3C1', 0x1);
    await waitUntil('the SOS stored', () => readings(pagerId('5A3C1'), from).some((r) => r.events.includes('sos')), 20_000);
    expect(bus('rf-1').bus.state).toBe('open');
    expect(gw.gateway.pipeline.stats().rejected.ING_ERR_INVALID_READING).toBeUndefined();
  });
});
