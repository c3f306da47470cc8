import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fixtureBytes, hexToBytes, loadFixtures } from '../../../devices/fixtures.js';
import { commFaultReading, commRestoredReading } from '../../../devices/comm-status.js';
import { buildReadHoldingRequest } from '../../../devices/modbus/frames.js';
import { buildReadResponse } from '../../../devices/modbus/slave.js';
import { ERS1_REGISTER_MAP, model } from '../../../devices/models/elec-ers1/index.js';
import { ReadingSchema } from '../../../devices/reading.js';
import { VOCABULARY } from '../../../devices/vocabulary.js';

const CTX = { deviceId: 'ELC-0001', receivedAt: 1_733_300_000_000, address: 1 } as const;
const PLACE = { grid: '110101013001002', building: '7', room: 'B1-3' };
const fixtures = loadFixtures('elec-ers1');

describe('elec-ers1 catalogue entry', () => {
  it('is the SPEC §4.2 poll on a modbus-rtu electrical model', () => {
    expect(model.id).toBe('elec-ers1');
    expect(model.kind).toBe('electrical');
    expect(model.transport).toBe('modbus-rtu');
    expect(model.heartbeatMs).toBe(1000);
    expect(model.poll).toEqual({ start: 1, count: 29 });
    // SPEC §4.2: "One poll = one FC03 read of 0x0001–0x001D (29 registers): 01 03 00 01 00 1D + CRC"
    expect(buildReadHoldingRequest(1, model.poll.start, model.poll.count)).toEqual(hexToBytes('01 03 00 01 00 1D D4 03'));
  });

  it('produces every electrical metric and flag but comm_fault, and the rising edge of each flag it reads', () => {
    const meterFlags = VOCABULARY.electrical.states.filter((s) => s !== 'comm_fault');
    expect(model.produces.metrics).toEqual(VOCABULARY.electrical.metrics);
    // comm_fault is the master's (comm-status.ts): a decoded reading carries it, always false.
    expect(model.produces.states).toEqual(meterFlags);
    expect(model.produces.events).toEqual(meterFlags);
  });

  it('puts every electrical state flag in a decoded reading, comm_fault false', () => {
    const decoded = model.decode(buildReadResponse(1, model.encodeRegisters({})), CTX);
    expect(decoded.ok && Object.keys(decoded.value.state).sort()).toEqual([...VOCABULARY.electrical.states].sort());
    expect(decoded.ok && decoded.value.state.comm_fault).toBe(false);
  });

  it('keeps the leakage set-point with its SPEC §4.2 default', () => {
    expect(ERS1_REGISTER_MAP.settings).toEqual([
      { address: 0x0100, name: 'leakage_setpoint_ma', type: 'u16', default: 300, writable: true },
    ]);
  });
});

describe('elec-ers1 fixtures', () => {
  it.each(fixtures.map((f) => [f.name, f] as const))('%s', (_name, f) => {
    const ctx = { ...f.context, address: f.context.address ?? 1 };
    const result = model.decode(fixtureBytes(f.input), ctx);
    if ('error' in f.expect) {
      expect(result.ok ? 'decoded' : result.error.code).toBe(f.expect.error);
    } else if ('reading' in f.expect) {
      expect(result).toEqual({ ok: true, value: f.expect.reading });
      if (result.ok) expect(ReadingSchema.safeParse({ ...result.value, place: PLACE }).success).toBe(true);
    } else {
      throw new Error('elec-ers1 has no stream fixtures');
    }
  });

  it('cover every metric, state flag and event the model produces', () => {
    const readings = fixtures.flatMap((f) => ('reading' in f.expect ? [f.expect.reading] : []));
    const metrics = new Set(readings.flatMap((r) => Object.keys(r.metrics as object)));
    const trueFlags = new Set(readings.flatMap((r) => Object.entries(r.state as Record<string, boolean>).filter(([, v]) => v).map(([k]) => k)));
    const events = new Set(readings.flatMap((r) => r.events as string[]));
    expect([...model.produces.metrics].filter((m) => !metrics.has(m))).toEqual([]);
    expect(model.produces.states.filter((s) => !trueFlags.has(s))).toEqual([]);
    expect(model.produces.events.filter((e) => !events.has(e))).toEqual([]);
    const errors = new Set(fixtures.flatMap((f) => ('error' in f.expect ? [f.expect.error] : [])));
    expect([...errors].sort()).toEqual(
      ['DEV_ERR_BYTE_COUNT', 'DEV_ERR_CRC', 'DEV_ERR_EXCEPTION', 'DEV_ERR_FUNCTION', 'DEV_ERR_SHORT_FRAME', 'DEV_ERR_SLAVE_ADDRESS'],
    );
  });

  it('names the exception code in the message', () => {
    const result = model.decode(hexToBytes('01 83 02 C0 F1'), CTX);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.error.message).toContain('2 (illegal data address)');
  });
});

describe('elec-ers1 encodeRegisters', () => {
  it('encodes a sample into the 29 registers that decode back to it', () => {
    const sample = {
      metrics: { voltage_v: 220.3, current_a: 5.432, power_w: -1180, power_factor: -0.985, frequency_hz: 50.02, energy_kwh: 123456.78, residual_ma: 12, t1_c: 25.3, t2_c: -24.8, arc_count: 2 },
      state: { short_circuit: true, overheat: true, fault: true },
    };
    const registers = model.encodeRegisters(sample);
    expect(registers).toHaveLength(29);
    expect(registers[0]).toBe(0x0202); // alarm word: b1 (first over-temperature bit) | b9
    expect(registers[1]).toBe(0x0001); // fault word: lowest bit
    expect(registers.slice(0x19 - 1, 0x1d - 1)).toEqual([253, 0x10000 - 248, 0x8000, 0x8000]);
    const result = model.decode(buildReadResponse(1, registers), CTX);
    expect(result.ok && result.value.metrics).toEqual(sample.metrics);
    expect(result.ok && result.value.events).toEqual(['overheat', 'short_circuit', 'fault']);
  });

  it('round-trips any sample the registers can hold (property)', () => {
    const tenths = (min: number, max: number) => fc.integer({ min, max }).map((n) => n / 10);
    const arb = fc.record({
      metrics: fc.record(
        {
          voltage_v: fc.integer({ min: 0, max: 0xffff }).map((n) => n / 10),
          current_a: fc.integer({ min: 0, max: 0xffff }).map((n) => n / 1000),
          power_w: fc.integer({ min: -0x80000000, max: 0x7fffffff }),
          power_factor: fc.integer({ min: -1000, max: 1000 }).map((n) => n / 1000),
          frequency_hz: fc.integer({ min: 4500, max: 6500 }).map((n) => n / 100),
          energy_kwh: fc.integer({ min: 0, max: 0xffffffff }).map((n) => n / 100),
          residual_ma: fc.integer({ min: 0, max: 0xffff }),
          t1_c: tenths(-400, 1500),
          t2_c: tenths(-400, 1500),
          t3_c: tenths(-400, 1500),
          t4_c: tenths(-400, 1500),
          arc_count: fc.integer({ min: 0, max: 0xffff }),
        },
        { requiredKeys: ['voltage_v', 'current_a', 'power_w', 'power_factor', 'frequency_hz', 'energy_kwh', 'residual_ma', 'arc_count'] },
      ),
      state: fc.record(Object.fromEntries(model.produces.events.map((f) => [f, fc.boolean()]))),
    });
    fc.assert(
      fc.property(arb, (sample) => {
        const decoded = model.decode(buildReadResponse(1, model.encodeRegisters(sample)), CTX);
        expect(decoded.ok).toBe(true);
        if (!decoded.ok) return;
        // -0 and 0 are one register value; compare as numbers a person reads.
        const normalised = Object.fromEntries(Object.entries(sample.metrics).map(([k, v]) => [k, v === 0 ? 0 : v]));
        expect(decoded.value.metrics).toEqual(normalised);
        expect(decoded.value.state).toEqual({ ...Object.fromEntries(model.produces.states.map((s) => [s, false])), comm_fault: false, ...sample.state });
      }),
    );
  });

  it('refuses a value the registers cannot hold (simulator bug, not wire input)', () => {
    expect(() => model.encodeRegisters({ metrics: { voltage_v: 7000 } })).toThrow(RangeError);
    expect(() => model.encodeRegisters({ metrics: { t1_c: -3276.8 } })).toThrow(/missing/);
  });
});

describe('elec-ers1 decode never throws', () => {
  it('on random bytes, and on random frames that pass the CRC (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 80 }), fc.integer({ min: 1, max: 247 }), (bytes, address) => {
        const result = model.decode(bytes, { ...CTX, address });
        expect(typeof result.ok).toBe('boolean');
      }),
    );
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 29, maxLength: 29 }), (registers) => {
        const result = model.decode(buildReadResponse(1, registers), CTX);
        expect(result.ok).toBe(true);
        if (result.ok) expect(ReadingSchema.safeParse({ ...result.value, place: PLACE }).success).toBe(true);
      }),
    );
  });
});

describe('comm_fault / comm_restored readings (SPEC §4.1)', () => {
  const previous = { ...Object.fromEntries(model.produces.states.map((s) => [s, false])), comm_fault: false, leakage: true };

  it('say the meter stopped answering, keeping the last known flags', () => {
    expect(commFaultReading(model, { deviceId: 'ELC-0001', receivedAt: 5000, previous })).toEqual({
      deviceId: 'ELC-0001',
      model: 'elec-ers1',
      kind: 'electrical',
      ts: 5000,
      receivedAt: 5000,
      metrics: {},
      state: { ...previous, comm_fault: true },
      events: ['comm_fault'],
    });
  });

  it('say it answers again, and the next decoded reading raises no stale events', () => {
    const faulted = commFaultReading(model, { deviceId: 'ELC-0001', receivedAt: 5000, previous });
    const restored = commRestoredReading(model, { deviceId: 'ELC-0001', receivedAt: 9000, previous: faulted.state });
    expect(restored.events).toEqual(['comm_restored']);
    expect(restored.state).toEqual({ ...previous, comm_fault: false });
    expect(restored.metrics).toEqual({});
    const values = model.encodeRegisters({ metrics: { voltage_v: 220 }, state: { leakage: true } });
    const decoded = model.decode(buildReadResponse(1, values), { ...CTX, previous: restored.state });
    expect(decoded.ok && decoded.value.events).toEqual([]);
  });

  it('default every flag to false for a meter never seen, and validate against the vocabulary', () => {
    const r = commFaultReading(model, { deviceId: 'ELC-0002', receivedAt: 1 });
    expect(r.state).toEqual({ ...Object.fromEntries(VOCABULARY.electrical.states.map((s) => [s, false])), comm_fault: true });
    expect(ReadingSchema.safeParse({ ...r, place: PLACE }).success).toBe(true);
  });
});
