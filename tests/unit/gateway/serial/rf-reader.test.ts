import { describe, expect, it } from 'vitest';
import type { DeviceRecord } from '../../../../devices/device-record.js';
import type { DeviceState } from '../../../../devices/model.js';
import { model as pagerRf } from '../../../../devices/models/pager-rf/index.js';
import type { ReadingDraft } from '../../../../devices/reading.js';
import { createRfReader, type RfReaderDeps, type RfRejectReason } from '../../../../gateway/serial/rf-reader.js';
import { createFakeBus, createFakeClock, silentLogger } from './fakes.js';

function pager(id: string, rf: string): DeviceRecord {
  return { id, model: 'pager-rf', place: { grid: '110101013001002', building: '5', room: '302' }, bus: 'rf-1', rf };
}

function rig(maxUnregistered?: number) {
  const clock = createFakeClock();
  const bus = createFakeBus(clock, 'rf-1');
  const registry = new Map([['5A3C1', pager('PGR-0001', '5A3C1')]]);
  const store = new Map<string, DeviceState>();
  const readings: { draft: ReadingDraft; device: string }[] = [];
  const rejects: { reason: RfRejectReason; device: string }[] = [];
  const deps: RfReaderDeps = {
    bus,
    resolve: (rf) => registry.get(rf),
    devices: () => [...registry.values()],
    model: pagerRf,
    previousState: (id) => store.get(id),
    clock,
    logger: silentLogger,
    onReading(draft, device) {
      readings.push({ draft, device: device.id });
      store.set(device.id, draft.state);
    },
    onReject: (reason, _d, device) => rejects.push({ reason, device: device.id }),
    ...(maxUnregistered === undefined ? {} : { maxUnregistered }),
  };
  const reader = createRfReader(deps);
  const word = (id: string, key: number): Buffer => pagerRf.encodeFrame(id, key);
  return { clock, bus, reader, readings, rejects, word, store, deps };
}

describe('rf reader', () => {
  it('an sos needs its second word; the reading is as of the first word', async () => {
    const r = rig();
    r.reader.start();
    const first = r.clock.now();
    r.bus.deliver(r.word('5A3C1', 0x1));
    expect(r.readings).toHaveLength(0);
    await r.clock.advance(40);
    r.bus.deliver(r.word('5A3C1', 0x1));
    await r.clock.advance(40);
    r.bus.deliver(r.word('5A3C1', 0x1));
    expect(r.readings).toEqual([{ device: 'PGR-0001', draft: expect.objectContaining({ events: ['sos'], receivedAt: first, ts: first }) as unknown }]);
    r.reader.stop();
  });

  it('a lone sos word is counted as stray by the once-a-second expiry, even when the radio stays quiet', async () => {
    const r = rig();
    r.reader.start();
    r.bus.deliver(r.word('5A3C1', 0x1));
    await r.clock.advance(3_000);
    expect(r.reader.stats()).toMatchObject({ straySos: 1, readings: 0 });
    r.reader.stop();
    expect(r.clock.pending()).toBe(0);
  });

  it('unknown keys of a registered pager are rejected; unregistered ids are listed, most recent first, bounded', async () => {
    const r = rig(2);
    r.reader.start();
    r.bus.deliver(r.word('5A3C1', 0x3));
    expect(r.rejects).toEqual([{ reason: 'unknown_key', device: 'PGR-0001' }]);
    for (const id of ['00001', '00002', '00001', '00003']) {
      r.bus.deliver(r.word(id, 0x2));
      await r.clock.advance(2_000);
    }
    expect(r.reader.unregistered().map((u) => [u.id, u.presses])).toEqual([
      ['00003', 1],
      ['00001', 2],
    ]);
    expect(r.readings).toHaveLength(0);
    expect(r.reader.stats()).toMatchObject({ unknownKeys: 1, unregisteredPresses: 4, unregisteredIds: 2 });
    r.reader.stop();
  });

  it('a frame cut by a bus outage is not glued to the bytes after it', () => {
    const r = rig();
    r.reader.start();
    const w = r.word('5A3C1', 0x2);
    r.bus.deliver(w.subarray(0, 6));
    r.bus.goDown();
    r.bus.goUp();
    r.bus.deliver(w.subarray(6));
    r.bus.deliver(w);
    expect(r.readings.map((x) => x.draft.events)).toEqual([['comm_fault'], ['comm_restored'], ['service_call']]);
    // The head was dropped at the outage, so its tail is skipped, not completed into a frame.
    expect(r.reader.stats()).toMatchObject({ frames: 1, skippedBytes: 6 });
    r.reader.stop();
  });

  it('while the bus is down its pagers get comm_fault, once; comm_restored when it is back (SPEC §4)', () => {
    const r = rig();
    r.store.set('PGR-0001', { battery_low: true });
    r.reader.start();
    r.bus.goDown();
    expect(r.readings).toEqual([{ device: 'PGR-0001', draft: expect.objectContaining({ kind: 'pager', model: 'pager-rf', events: ['comm_fault'], state: { battery_low: true, comm_fault: true } }) as unknown }]);
    // A restarted gateway finds the bus still down: the stored state already says so.
    r.reader.stop();
    const again = createRfReader(r.deps);
    again.start();
    r.bus.goDown();
    expect(r.readings).toHaveLength(1);
    r.bus.goUp();
    expect(r.readings.map((x) => [x.draft.events, x.draft.state])).toEqual([
      [['comm_fault'], { battery_low: true, comm_fault: true }],
      [['comm_restored'], { battery_low: true, comm_fault: false }],
    ]);
    // Up again with nothing to restore: nothing said.
    r.bus.goDown();
    r.bus.goUp();
    expect(r.readings).toHaveLength(4);
    again.stop();
  });
});
