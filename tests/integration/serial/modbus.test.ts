// The Modbus master against simulated meters over a real pseudo-terminal pair, node-serialport on
// both ends (SPEC §4, §4.1). Tests run in order and share one bus: each leaves it polling.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DeviceRecord } from '../../../devices/device-record.js';
import { buildExceptionResponse } from '../../../devices/modbus/slave.js';
import type { DeviceState } from '../../../devices/model.js';
import { model as ers1 } from '../../../devices/models/elec-ers1/index.js';
import type { ReadingDraft } from '../../../devices/reading.js';
import { createSerialBus, type SerialBus } from '../../../gateway/serial/bus.js';
import { createModbusMaster, ModbusWriteError, type ModbusMaster, type ModbusRejectReason } from '../../../gateway/serial/modbus-master.js';
import { createModbusSlave, createSimulatedMeter, type ModbusSlaveSimulator, type SimulatedMeter } from '../../../simulators/modbus-slave.js';
import { createPtyPair, type PtyPair } from '../../helpers/pty.js';
import { intervals, logger, meter, waitFor } from './harness.js';

type Damage = 'crc' | 'exception' | 'garbage';

describe('modbus master on a pty pair: 4 meters on one bus', () => {
  let pair: PtyPair;
  let bus: SerialBus;
  let master: ModbusMaster;
  let sim: ModbusSlaveSimulator;
  let startedAt = 0;
  const meters = new Map<number, SimulatedMeter>([1, 2, 3, 4].map((a) => [a, createSimulatedMeter()]));
  const dead = new Set<number>([3]);
  /** Damage to apply to the next reply of an address. */
  const damage: { address: number; kind: Damage }[] = [];
  const devices: DeviceRecord[] = [meter('ELC-1', 1), meter('ELC-2', 2), meter('ELC-3', 3), meter('ELC-4', 4)];
  const store = new Map<string, DeviceState>();
  const readings: { id: string; draft: ReadingDraft; at: number }[] = [];
  const rejects: { id: string; reason: ModbusRejectReason }[] = [];

  const events = (id: string): string[][] => readings.filter((r) => r.id === id).map((r) => r.draft.events);
  const has = (id: string, event: string): boolean => readings.some((r) => r.id === id && r.draft.events.includes(event));
  const count = (id: string, event: string): number => readings.filter((r) => r.id === id && r.draft.events.includes(event)).length;
  const polls = (address: number, from = 0): number[] =>
    sim.requests(address).filter((q) => q.fc === 0x03 && q.at >= from).map((q) => q.at);

  const startSim = async (): Promise<void> => {
    sim = createModbusSlave({
      path: pair.b,
      baudRate: 9600,
      slaves: meters,
      dead,
      corrupt({ address, response }) {
        const i = damage.findIndex((d) => d.address === address);
        if (i < 0) return undefined;
        const [d] = damage.splice(i, 1);
        if (d?.kind === 'crc') {
          const bad = Buffer.from(response);
          bad[bad.length - 1] = (bad[bad.length - 1] ?? 0) ^ 0x5a;
          return bad;
        }
        if (d?.kind === 'exception') return buildExceptionResponse(address, 0x03, 0x04); // slave device failure
        return Buffer.concat([Buffer.from([0x00, 0xff, 0x7e]), response]);
      },
    });
    await sim.start();
  };

  beforeAll(async () => {
    pair = await createPtyPair();
    await startSim();
    bus = createSerialBus({ id: 'rs485-1', path: pair.a, baudRate: 9600, logger });
    master = createModbusMaster({
      bus,
      devices,
      modelFor: (d) => (d.model === ers1.id ? ers1 : undefined),
      previousState: (id) => store.get(id),
      clock: { now: () => Date.now(), setTimeout: (fn, ms) => setTimeout(fn, ms), clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout) },
      logger,
      onReading(draft, device) {
        readings.push({ id: device.id, draft, at: Date.now() });
        store.set(device.id, draft.state);
      },
      onReject: (reason, _detail, device) => rejects.push({ id: device.id, reason }),
    });
    master.start();
    startedAt = Date.now();
    await bus.start();
    expect(bus.state).toBe('open');
  });

  afterAll(async () => {
    await master?.stop();
    await bus?.stop();
    await sim?.stop();
    await pair?.dispose();
  });

  it('a dead meter gets comm_fault after 3 failed polls while the others keep their interval; it comes back with comm_restored', async () => {
    await waitFor('comm_fault of the dead meter', () => has('ELC-3', 'comm_fault'), 8_000);
    const faultAt = readings.find((r) => r.id === 'ELC-3')?.at ?? 0;
    // 3 polls of 3 attempts each (1 + 2 retries), nothing answered.
    expect(polls(3).filter((t) => t <= faultAt).length).toBeGreaterThanOrEqual(9);
    expect(events('ELC-3')).toEqual([['comm_fault']]);
    expect(rejects.filter((r) => r.id === 'ELC-3').every((r) => r.reason === 'timeout')).toBe(true);

    // A little longer at the backed-off rate, then measure the live meters' polls as the meters saw them.
    await new Promise((r) => setTimeout(r, 3_000));
    const window = Date.now() - startedAt;
    for (const a of [1, 2, 4]) {
      const times = polls(a, startedAt);
      const gaps = intervals(times);
      // 1 s each; at worst one dead poll (3 × 300 ms) and a live one in the way.
      expect(times.length).toBeGreaterThanOrEqual(Math.floor(window / 1_000) - 2);
      expect(Math.max(...gaps)).toBeLessThan(2_600);
      expect(events(`ELC-${a}`).flat()).not.toContain('comm_fault');
    }
    // Backed off: after its comm_fault the dead meter is asked far less often than once a second.
    const deadPollsAfter = polls(3, faultAt + 50).length / 3;
    expect(deadPollsAfter).toBeLessThanOrEqual(2);

    // It answers again — and meanwhile its socket has short-circuited.
    meters.get(3)?.set({ ...meters.get(3)?.sample(), state: { short_circuit: true } });
    dead.delete(3);
    await waitFor('comm_restored', () => has('ELC-3', 'comm_restored'), 10_000);
    await waitFor('the reading after it', () => events('ELC-3').length >= 3, 2_000);
    expect(events('ELC-3').slice(0, 3)).toEqual([['comm_fault'], ['comm_restored'], ['short_circuit']]);
    expect(count('ELC-3', 'comm_fault')).toBe(1);
  });

  it('a corrupted CRC is rejected and retried, an exception reply and garbage before a reply are counted', async () => {
    const before = master.stats();
    damage.push({ address: 2, kind: 'crc' }, { address: 4, kind: 'exception' }, { address: 1, kind: 'garbage' });
    await waitFor('all damage applied', () => damage.length === 0, 5_000);
    await waitFor('the next polls', () => master.stats().polls >= before.polls + 6, 5_000);
    const after = master.stats();
    expect(after.rejected.crc - before.rejected.crc).toBe(1);
    expect(after.rejected.exception - before.rejected.exception).toBe(1);
    expect(after.rejected.garbage_bytes - before.rejected.garbage_bytes).toBe(3);
    expect(rejects.filter((r) => r.reason === 'crc').map((r) => r.id)).toEqual(['ELC-2']);
    expect(rejects.filter((r) => r.reason === 'exception').map((r) => r.id)).toEqual(['ELC-4']);
    // A bad CRC is retried at once: the poll itself did not fail. An exception fails that poll, only that one.
    expect(after.pollsFailed - before.pollsFailed).toBe(1);
    for (const id of ['ELC-1', 'ELC-2', 'ELC-4']) expect(count(id, 'comm_fault')).toBe(0);
  });

  it('a set-point write goes between polls; a register the meter lacks is an exception', async () => {
    await master.writeSetpoint(devices[0]!, 0x0100, 100);
    expect(meters.get(1)?.setpoints.get(0x0100)).toBe(100);
    const err = await master.writeSetpoint(devices[1]!, 0x0200, 1).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ModbusWriteError);
    expect((err as ModbusWriteError).reason).toBe('exception');
  });

  it('the adapter vanishing gives comm_fault to every meter; recreated on the same path, the bus reopens by itself', async () => {
    const ids = devices.map((d) => d.id);
    const faultsBefore = new Map(ids.map((id) => [id, count(id, 'comm_fault')]));
    const restoredBefore = new Map(ids.map((id) => [id, count(id, 'comm_restored')]));
    // A meter already in comm_fault is not faulted twice.
    const healthy = master.stats().devices.filter((d) => !d.commFault).map((d) => d.deviceId);
    const answering = ids.filter((id) => !dead.has(Number(id.slice(4))));
    expect(healthy.length).toBeGreaterThanOrEqual(3);
    await pair.kill();
    const newFaults = (): string[] => ids.filter((id) => count(id, 'comm_fault') > (faultsBefore.get(id) ?? 0));
    await waitFor('comm_fault for every meter on the bus', () => newFaults().length === healthy.length, 4_000);
    expect(newFaults()).toEqual(healthy);
    expect(bus.state).toBe('reopening');
    const opens = bus.health().opens;

    await new Promise((r) => setTimeout(r, 1_500)); // unplugged for a while
    expect(ids.map((id) => count(id, 'comm_fault') - (faultsBefore.get(id) ?? 0))).toEqual(ids.map((id) => (healthy.includes(id) ? 1 : 0)));
    await sim.stop();
    await pair.restart();
    await startSim();
    // Nothing but the bus's own backoff and path watch brings it back.
    const restored = (): string[] => ids.filter((id) => count(id, 'comm_restored') > (restoredBefore.get(id) ?? 0));
    await waitFor('comm_restored for every answering meter', () => restored().length === answering.length, 10_000);
    expect(restored()).toEqual(answering);
    expect(bus.state).toBe('open');
    // At least one reopen (a loaded machine may see the recreated pty flap once more).
    expect(bus.health().opens).toBeGreaterThanOrEqual(opens + 1);
    const resumed = readings.length;
    await waitFor('polling resumed', () => readings.length >= resumed + 2 * answering.length, 4_000);
  });
});
