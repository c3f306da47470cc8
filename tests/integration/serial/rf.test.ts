// The RF bridge reader over a real pseudo-terminal pair, node-serialport on both ends (SPEC §4.3).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DeviceRecord } from '../../../devices/device-record.js';
import type { DeviceState } from '../../../devices/model.js';
import { model as pagerRf } from '../../../devices/models/pager-rf/index.js';
import type { ReadingDraft } from '../../../devices/reading.js';
import { createSerialBus, systemSerialClock, type SerialBus } from '../../../gateway/serial/bus.js';
import { createRfReader, type RfReader } from '../../../gateway/serial/rf-reader.js';
import { createRfEmitter, type RfEmitter } from '../../../simulators/rf-emitter.js';
import { createPtyPair, type PtyPair } from '../../helpers/pty.js';
import { logger, pager, sleep, waitFor } from './harness.js';

const SOS = 0x1;
const SERVICE = 0x2;
const FAMILY = 0x4;
const CANCEL = 0x8;
const TEST = 0xe;

describe('rf reader on a pty pair', () => {
  let pair: PtyPair;
  let bus: SerialBus;
  let reader: RfReader;
  let emitter: RfEmitter;
  const registry = new Map<string, DeviceRecord>([['5A3C1', pager('PGR-0001', '5A3C1')]]);
  const store = new Map<string, DeviceState>();
  const readings: { id: string; draft: ReadingDraft }[] = [];
  const chunkSizes: number[] = [];

  const eventsSince = (n: number): string[][] => readings.slice(n).map((r) => r.draft.events);

  beforeAll(async () => {
    pair = await createPtyPair();
    emitter = createRfEmitter({ path: pair.b });
    await emitter.start();
    bus = createSerialBus({ id: 'rf-1', path: pair.a, baudRate: 19_200, logger });
    bus.onData((chunk) => chunkSizes.push(chunk.length));
    reader = createRfReader({
      bus,
      resolve: (rf) => registry.get(rf),
      devices: () => [...registry.values()],
      model: pagerRf,
      previousState: (id) => store.get(id),
      clock: systemSerialClock,
      logger,
      onReading(draft, device) {
        readings.push({ id: device.id, draft });
        store.set(device.id, draft.state);
      },
    });
    reader.start();
    await bus.start();
    expect(bus.state).toBe('open');
  });

  afterAll(async () => {
    reader?.stop();
    await bus?.stop();
    await emitter?.stop();
    await pair?.dispose();
  });

  it('the three repeats of a press are one reading', async () => {
    const n = readings.length;
    await emitter.press('5A3C1', SERVICE);
    await sleep(200);
    expect(eventsSince(n)).toEqual([['service_call']]);
    expect(readings[n]?.id).toBe('PGR-0001');
    expect(reader.stats().words).toBeGreaterThanOrEqual(3);
  });

  it('frames split across reads are assembled', async () => {
    const n = readings.length;
    const chunksBefore = chunkSizes.length;
    const frame = emitter.frame('5A3C1', FAMILY);
    for (const cut of [1, 5, 11]) {
      await emitter.write(frame.subarray(0, cut));
      await sleep(30);
      await emitter.write(frame.subarray(cut));
      await sleep(40);
    }
    await sleep(100);
    // The pty really delivered pieces of frames: the reader had to join them.
    expect(chunkSizes.slice(chunksBefore).some((size) => size < 12)).toBe(true);
    expect(eventsSince(n)).toEqual([['family_call']]);
  });

  it('garbage between frames is skipped, including a false AA A4 start', async () => {
    const n = readings.length;
    const before = reader.stats();
    const frame = emitter.frame('5A3C1', CANCEL);
    const falseStart = Buffer.from([0xaa, 0xa4, 0x01, 0x02, 0x03]); // an AA A4 with no 55 where the tail should be
    await emitter.write(Buffer.concat([Buffer.from([0x00, 0x13, 0x55, 0xaa]), frame, falseStart, frame, Buffer.from([0xff, 0xfe]), frame]));
    await sleep(200);
    expect(eventsSince(n)).toEqual([['cancel']]);
    const after = reader.stats();
    expect(after.frames - before.frames).toBe(3);
    expect(after.skippedBytes - before.skippedBytes).toBeGreaterThanOrEqual(4 + 4 + 2);
    expect(after.rejectedCandidates - before.rejectedCandidates).toBe(1);
  });

  it('a single sos word raises nothing (counted as stray); a two-word sos is raised once', async () => {
    const n = readings.length;
    const stray = reader.stats().straySos;
    await emitter.press('5A3C1', SOS, { repeats: 1 });
    // Its window (1.5 s) passes and the once-a-second expiry counts it, though the radio stays quiet.
    await waitFor('stray sos counted', () => reader.stats().straySos === stray + 1, 4_000);
    expect(eventsSince(n)).toEqual([]);

    await emitter.press('5A3C1', SOS, { repeats: 2, gapMs: 60 });
    await waitFor('sos', () => readings.length > n, 1_000);
    await sleep(1_700); // nothing more comes of it
    expect(eventsSince(n)).toEqual([['sos']]);
    expect(reader.stats().straySos).toBe(stray + 1);
  });

  it('an unregistered id is listed for enrolment and raises nothing', async () => {
    const n = readings.length;
    await emitter.press('ABCDE', SOS);
    await emitter.press('ABCDE', TEST);
    await sleep(200);
    expect(eventsSince(n)).toEqual([]);
    const listed = reader.unregistered();
    expect(listed).toHaveLength(1);
    expect(listed[0]).toMatchObject({ id: 'ABCDE', presses: 2, lastKey: TEST });
    expect(listed[0]?.lastSeen).toBeGreaterThanOrEqual(listed[0]?.firstSeen ?? Infinity);
  });

  it('a listen-only bus notices the adapter vanishing (path watch) and comes back by itself', async () => {
    const opens = bus.health().opens;
    await pair.kill();
    // No write ever fails on this bus: serialport closes the port itself when the hang-up finds its
    // read parked in poll(), and when it finds the read in flight only the path watch can tell
    // (serialport/bindings-cpp#162; the unit test of the watch covers that case deterministically).
    await waitFor('rf bus down', () => bus.state === 'reopening', 3_000);
    await emitter.stop();
    await pair.restart();
    emitter = createRfEmitter({ path: pair.b });
    await emitter.start();
    await waitFor('rf bus back', () => bus.state === 'open', 5_000);
    expect(bus.health().opens).toBe(opens + 1);
    const n = readings.length;
    await emitter.press('5A3C1', SOS);
    await waitFor('sos after the reopen', () => readings.length > n, 2_000);
    expect(eventsSince(n)).toEqual([['sos']]);
  });
});
