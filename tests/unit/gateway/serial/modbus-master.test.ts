import { describe, expect, it } from 'vitest';
import type { DeviceRecord } from '../../../../devices/device-record.js';
import { buildReadHoldingRequest, parseReadResponse, parseWriteSingleResponse, readHoldingRequest, writeSingleRequest } from '../../../../devices/modbus/frames.js';
import { buildExceptionResponse, buildReadResponse, buildWriteSingleResponse, parseRequest } from '../../../../devices/modbus/slave.js';
import type { DeviceState } from '../../../../devices/model.js';
import { model as ers1 } from '../../../../devices/models/elec-ers1/index.js';
import type { ReadingDraft } from '../../../../devices/reading.js';
import {
  createModbusMaster,
  judgeBytes,
  judgeTimeout,
  ModbusWriteError,
  type ModbusMasterDeps,
  type ModbusRejectReason,
} from '../../../../gateway/serial/modbus-master.js';
import { createFakeBus, createFakeClock, meterRecord, silentLogger, type FakeBus, type FakeClock } from './fakes.js';

const NORMAL = ers1.encodeRegisters({ metrics: { voltage_v: 221.4, current_a: 1.2, t1_c: 30 }, state: {} });
const SHORT = ers1.encodeRegisters({ metrics: { voltage_v: 221.4, current_a: 38.5, t1_c: 45 }, state: { short_circuit: true } });

interface Meter {
  registers: number[];
  dead: boolean;
  /** Replaces the next replies (one per entry); `null` = silence. */
  script: (Uint8Array[] | null)[];
  setpoints: Map<number, number>;
}

interface Rig {
  clock: FakeClock;
  bus: FakeBus;
  meters: Map<number, Meter>;
  readings: { draft: ReadingDraft; device: DeviceRecord; at: number }[];
  rejects: { reason: ModbusRejectReason; device: string }[];
  store: Map<string, DeviceState>;
  devices: DeviceRecord[];
  master: ReturnType<typeof createModbusMaster>;
  /** Requests to `address` (fake time of the write). */
  requestsTo(address: number): number[];
}

function rig(addresses: number[], options: Partial<ModbusMasterDeps> & { store?: Map<string, DeviceState> } = {}): Rig {
  const clock = createFakeClock();
  const bus = createFakeBus(clock);
  const meters = new Map<number, Meter>();
  for (const a of addresses) meters.set(a, { registers: [...NORMAL], dead: false, script: [], setpoints: new Map([[0x100, 300]]) });
  // A meter at 9600 baud answers a 29-register poll ~75 ms after the request.
  bus.responder = (request) => {
    const parsed = parseRequest(request);
    if (!parsed.ok) return undefined;
    const meter = meters.get(parsed.value.slave);
    if (meter === undefined || meter.dead) return undefined;
    const scripted = meter.script.shift();
    if (scripted === null) return undefined;
    if (scripted !== undefined) return { chunks: scripted, delayMs: 75 };
    const req = parsed.value;
    if (req.fc === 0x06) {
      if (!meter.setpoints.has(req.address)) return { chunks: [buildExceptionResponse(req.slave, 6, 2)], delayMs: 15 };
      meter.setpoints.set(req.address, req.value);
      return { chunks: [buildWriteSingleResponse(req.slave, req.address, req.value)], delayMs: 15 };
    }
    const frame = buildReadResponse(req.slave, meter.registers);
    // Split as a USB adapter would deliver it.
    return { chunks: [frame.subarray(0, 7), frame.subarray(7, 40), frame.subarray(40)], delayMs: 73 };
  };
  const store = options.store ?? new Map<string, DeviceState>();
  const readings: Rig['readings'] = [];
  const rejects: Rig['rejects'] = [];
  const devices = addresses.map((a) => meterRecord(`ELC-${a}`, a));
  const master = createModbusMaster({
    bus,
    devices,
    modelFor: (d) => (d.model === 'elec-ers1' ? ers1 : undefined),
    previousState: (id) => store.get(id),
    clock,
    logger: silentLogger,
    onReading(draft, device) {
      readings.push({ draft, device, at: clock.now() });
      // The store keeps the last state (the pipeline would commit it).
      store.set(device.id, draft.state);
    },
    onReject: (reason, _detail, device) => rejects.push({ reason, device: device.id }),
    ...options,
  });
  const requestsTo = (address: number): number[] => bus.sent.filter((s) => s.bytes[0] === address && s.bytes[1] === 0x03).map((s) => s.at);
  return { clock, bus, meters, readings, rejects, store, devices, master, requestsTo };
}

const eventsOf = (r: Rig, id: string): string[][] => r.readings.filter((x) => x.device.id === id).map((x) => x.draft.events);
const gaps = (times: number[]): number[] => times.slice(1).map((t, i) => t - (times[i] ?? 0));

describe('modbus master scheduling', () => {
  it('polls every meter once per interval with FC03 of the model poll, one transaction at a time', async () => {
    const r = rig([1, 2, 3, 4]);
    r.master.start();
    await r.clock.advance(10_000);
    await r.master.stop();
    expect(r.bus.sent[0]?.bytes).toEqual(buildReadHoldingRequest(1, 1, 29));
    expect(r.bus.sent[0]?.bytes.subarray(0, 6).toString('hex')).toBe('01030001001d'); // SPEC §4.2
    for (const a of [1, 2, 3, 4]) {
      const times = r.requestsTo(a);
      expect(times.length).toBeGreaterThanOrEqual(10);
      expect(times.length).toBeLessThanOrEqual(11);
      for (const g of gaps(times)) expect(g).toBe(1_000); // drift-free on an idle bus
    }
    // Half duplex: a request only after the previous reply, and ≥ 5 ms after it.
    const sent = r.bus.sent.map((s) => s.at);
    for (const g of gaps(sent)) expect(g).toBeGreaterThanOrEqual(73 + 2 + 5);
    expect(r.master.stats()).toMatchObject({ pollsFailed: 0, rejected: { timeout: 0, crc: 0, garbage_bytes: 0 } });
    expect(r.readings.every((x) => x.draft.events.length === 0)).toBe(true);
  });

  it('a dead meter: 3 failed polls give one comm_fault, then it is backed off and the others keep their interval', async () => {
    const r = rig([1, 2, 3, 4]);
    r.meters.get(3)!.dead = true;
    r.master.start();
    await r.clock.advance(60_000);
    const deadPolls = r.requestsTo(3);
    // 3 attempts per poll; 3 polls at full rate, then 2 s, 4 s, 8 s, 16 s, 30 s…
    expect(eventsOf(r, 'ELC-3')).toEqual([['comm_fault']]);
    const faultAt = r.readings.find((x) => x.device.id === 'ELC-3')!.at;
    expect(faultAt - r.clock.now() + 60_000).toBeLessThan(3_500);
    expect(deadPolls.length / 3).toBeLessThanOrEqual(9);
    const pollStarts = deadPolls.filter((_, i) => i % 3 === 0);
    // (plus at most one live poll in flight when it fell due)
    gaps(pollStarts)
      .slice(2, 6)
      .forEach((g, i) => {
        expect(g).toBeGreaterThanOrEqual(2_000 * 2 ** i);
        expect(g).toBeLessThanOrEqual(2_000 * 2 ** i + 100);
      });
    // Each live meter waits at most one dead poll (3 × (300 ms + gap)) beyond its interval.
    for (const a of [1, 2, 4]) {
      const g = gaps(r.requestsTo(a));
      expect(Math.max(...g)).toBeLessThanOrEqual(1_000 + 3 * 305 + 80);
      expect(g.length).toBeGreaterThanOrEqual(50);
    }
    expect(r.master.stats().rejected.timeout).toBe(deadPolls.length);
    expect(r.rejects.filter((x) => x.device === 'ELC-3').every((x) => x.reason === 'timeout')).toBe(true);

    // It answers again, now with a short circuit: comm_restored, then the reading decoded against the restored state.
    r.meters.get(3)!.dead = false;
    r.meters.get(3)!.registers = [...SHORT];
    await r.clock.advance(31_000);
    await r.master.stop();
    const after = eventsOf(r, 'ELC-3');
    expect(after.slice(0, 3)).toEqual([['comm_fault'], ['comm_restored'], ['short_circuit']]);
    const restored = r.readings.filter((x) => x.device.id === 'ELC-3')[1]!;
    expect(restored.draft.state).toMatchObject({ comm_fault: false, short_circuit: false });
    // Back to its interval.
    expect(gaps(r.requestsTo(3)).slice(-3)).toEqual([1_000, 1_000, 1_000]);
  });

  it('a bad CRC is retried at once and counted; the poll succeeds', async () => {
    const r = rig([1]);
    const bad = buildReadResponse(1, NORMAL);
    bad[bad.length - 1] = (bad[bad.length - 1] ?? 0) ^ 0xff;
    r.meters.get(1)!.script.push([bad]);
    r.master.start();
    await r.clock.advance(500);
    await r.master.stop();
    expect(r.master.stats()).toMatchObject({ polls: 1, pollsOk: 1, transactions: 2, rejected: { crc: 1, timeout: 0 } });
    // Refused as soon as the frame was whole, not after the 300 ms timeout.
    expect((r.bus.sent[1]?.at ?? 0) - (r.bus.sent[0]?.at ?? 0)).toBeLessThan(100);
    expect(r.readings).toHaveLength(1);
  });

  it('an exception reply is counted and not retried', async () => {
    const r = rig([1]);
    r.meters.get(1)!.script.push([buildExceptionResponse(1, 3, 4)]);
    r.master.start();
    await r.clock.advance(500);
    expect(r.master.stats()).toMatchObject({ transactions: 1, pollsFailed: 1, rejected: { exception: 1 } });
    await r.clock.advance(1_000);
    await r.master.stop();
    expect(r.readings).toHaveLength(1);
  });

  it('garbage before the reply is skipped and counted; a reply from another slave is slave_address', async () => {
    const r = rig([1]);
    const good = buildReadResponse(1, NORMAL);
    r.meters.get(1)!.script.push([Buffer.from([0x00, 0xff, 0x13]), good], [buildReadResponse(2, NORMAL)]);
    r.master.start();
    await r.clock.advance(1_500);
    await r.master.stop();
    const stats = r.master.stats();
    expect(stats.rejected.garbage_bytes).toBe(3);
    expect(stats.rejected.slave_address).toBe(1);
    expect(stats.pollsOk).toBe(2);
  });

  it('bus down: every meter gets comm_fault once; back up: each gets comm_restored on its first answer', async () => {
    const r = rig([1, 2]);
    r.master.start();
    await r.clock.advance(1_500);
    r.bus.goDown('adapter unplugged');
    r.bus.goDown('still down');
    await r.clock.advance(5_000);
    const sentWhileDown = r.bus.sent.length;
    await r.clock.advance(5_000);
    expect(r.bus.sent.length).toBe(sentWhileDown);
    r.bus.goUp();
    await r.clock.advance(500);
    await r.master.stop();
    for (const id of ['ELC-1', 'ELC-2']) expect(eventsOf(r, id)).toEqual([[], [], ['comm_fault'], ['comm_restored'], []]);
  });

  it('a comm_fault stored before a restart is restored by the first answer', async () => {
    const store = new Map<string, DeviceState>([['ELC-1', { short_circuit: false, comm_fault: true }]]);
    const r = rig([1], { store });
    r.master.start();
    await r.clock.advance(200);
    await r.master.stop();
    expect(eventsOf(r, 'ELC-1')).toEqual([['comm_restored'], []]);
  });

  it('writeSetpoint sends FC06 between polls and resolves on the echo; an exception rejects with its reason', async () => {
    const r = rig([1, 2]);
    r.master.start();
    await r.clock.advance(50); // poll of meter 1 in flight
    const ok = r.master.writeSetpoint(r.devices[0]!, 0x100, 100);
    const bad = r.master.writeSetpoint(r.devices[1]!, 0x200, 1);
    const badOutcome = bad.then(
      () => 'resolved',
      (err: unknown) => err,
    );
    await r.clock.advance(500);
    await expect(ok).resolves.toBeUndefined();
    const err = await badOutcome;
    expect(err).toBeInstanceOf(ModbusWriteError);
    expect((err as ModbusWriteError).reason).toBe('exception');
    expect(r.meters.get(1)!.setpoints.get(0x100)).toBe(100);
    // The write went after the poll in flight, before meter 2's poll.
    const order = r.bus.sent.map((s) => `${s.bytes[0]}:${s.bytes[1]}`);
    expect(order.slice(0, 4)).toEqual(['1:3', '1:6', '2:6', '2:3']);
    r.bus.goDown();
    await expect(r.master.writeSetpoint(r.devices[0]!, 0x100, 50)).rejects.toMatchObject({ reason: 'bus_down' });
    await r.master.stop();
    await expect(r.master.writeSetpoint(r.devices[0]!, 0x100, 50)).rejects.toMatchObject({ reason: 'stopped' });
    await expect(r.master.writeSetpoint(meterRecord('ELC-9', 9), 0x100, 50)).rejects.toMatchObject({ reason: 'unknown_device' });
  });

  it('a meter whose reply never completes fails with short_frame and is retried', async () => {
    const r = rig([1]);
    const good = buildReadResponse(1, NORMAL);
    r.meters.get(1)!.script.push([good.subarray(0, 30)], null);
    r.master.start();
    await r.clock.advance(1_000);
    await r.master.stop();
    expect(r.master.stats().rejected).toMatchObject({ short_frame: 1, timeout: 1 });
    expect(r.master.stats().pollsOk).toBe(1);
  });

  it('a listener that throws does not stop polling', async () => {
    const r = rig([1], {
      onReading: () => {
        throw new Error('pipeline bug');
      },
    });
    r.master.start();
    await r.clock.advance(3_500);
    await r.master.stop();
    expect(r.master.stats().pollsOk).toBe(4);
  });
});

describe('modbus master device list', () => {
  it('setDevices keeps the comm status of meters that stay, polls new ones, drops removed ones; a duplicate address is not polled', async () => {
    const r = rig([1, 2, 3]);
    r.meters.get(2)!.dead = true;
    r.master.start();
    await r.clock.advance(5_000);
    expect(r.master.stats().devices.find((d) => d.deviceId === 'ELC-2')).toMatchObject({ commFault: true });
    r.master.setDevices([r.devices[1]!, r.devices[2]!, { ...meterRecord('ELC-3b', 3) }]);
    const sentBefore = r.bus.sent.length;
    await r.clock.advance(3_000);
    await r.master.stop();
    const stats = r.master.stats();
    expect(stats.devices.map((d) => d.deviceId)).toEqual(['ELC-2', 'ELC-3']);
    expect(stats.devices[0]).toMatchObject({ commFault: true });
    expect(r.bus.sent.slice(sentBefore).some((s) => s.bytes[0] === 1)).toBe(false);
    expect(eventsOf(r, 'ELC-2')).toEqual([['comm_fault']]);
  });
});

describe('judgeBytes / judgeTimeout', () => {
  const req = readHoldingRequest(1, 1, 29);
  const parse = (f: Uint8Array): ReturnType<typeof parseReadResponse> => parseReadResponse(f, req);
  const good = buildReadResponse(1, NORMAL);

  it('pending until whole, then the answer', () => {
    expect(judgeBytes(good.subarray(0, 62), req, parse)).toEqual({ kind: 'pending' });
    expect(judgeBytes(good, req, parse)).toMatchObject({ kind: 'answer', garbage: 0 });
  });

  it('a bad CRC at the start is refused as soon as the frame is whole', () => {
    const bad = Buffer.from(good);
    bad[10] = (bad[10] ?? 0) ^ 1;
    expect(judgeBytes(bad, req, parse)).toMatchObject({ kind: 'rejected', reason: 'crc' });
  });

  it('at the timeout: nothing is timeout; noise is timeout plus garbage; another slave; wrong byte count', () => {
    expect(judgeTimeout(Buffer.alloc(0), req, parse, 300)).toMatchObject({ reason: 'timeout', garbage: 0 });
    expect(judgeTimeout(Buffer.from([0xff, 0x00, 0x42]), req, parse, 300)).toMatchObject({ reason: 'timeout', garbage: 3 });
    expect(judgeTimeout(buildReadResponse(2, NORMAL), req, parse, 300)).toMatchObject({ reason: 'slave_address' });
    expect(judgeTimeout(buildReadResponse(1, [1, 2]), req, parse, 300)).toMatchObject({ reason: 'byte_count' });
    expect(judgeTimeout(good.subarray(0, 20), req, parse, 300)).toMatchObject({ reason: 'short_frame' });
  });

  it('an FC06 echo of another value is refused', () => {
    const w = writeSingleRequest(1, 0x100, 100);
    const echo = buildWriteSingleResponse(1, 0x100, 99);
    expect(judgeBytes(echo, w, (f) => parseWriteSingleResponse(f, w))).toMatchObject({ kind: 'rejected', reason: 'byte_count' });
    const right = buildWriteSingleResponse(1, 0x100, 100);
    expect(judgeBytes(right, w, (f) => parseWriteSingleResponse(f, w))).toMatchObject({ kind: 'answer' });
  });
});
