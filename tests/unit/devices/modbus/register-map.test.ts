import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { defineModbusMeter } from '../../../../devices/modbus/meter-model.js';
import {
  decodeRegisters,
  defineRegisterMap,
  encodeRegisters,
  mapFlags,
  scaleDecimals,
  type RegisterMapInput,
} from '../../../../devices/modbus/register-map.js';
import { buildReadResponse } from '../../../../devices/modbus/slave.js';
import { ERS1_REGISTER_MAP } from '../../../../devices/models/elec-ers1/register-map.js';

const regs = (n: number, set: Record<number, number>, start = 0): number[] =>
  Array.from({ length: n }, (_, i) => set[start + i] ?? 0);

describe('decodeRegisters', () => {
  const map = defineRegisterMap({
    poll: { start: 0x10, count: 8 },
    fields: [
      { address: 0x10, metric: 'voltage_v', type: 'u16', scale: 0.1 },
      { address: 0x11, metric: 'power_factor', type: 'i16', scale: 0.001 },
      { address: 0x12, metric: 'power_w', type: 'i32' },
      { address: 0x14, metric: 'energy_kwh', type: 'u32', scale: 0.01 },
      { address: 0x16, metric: 't1_c', type: 'i16', scale: 0.1, missing: 0x8000 },
    ],
    bitWords: [{ address: 0x17, flags: { overheat: [1, 2, 3, 4], leakage: [0] } }],
  });

  it('reads the decimal a person reads, not the nearest binary product', () => {
    expect(2207 * 0.1).toBe(220.70000000000002); // the reason for the rounding
    const out = decodeRegisters(map, regs(8, { 0x10: 2207, 0x11: 0xfc19, 0x12: 0xffff, 0x13: 0xfb2e, 0x14: 0x0001, 0x15: 0xe240, 0x16: 0xfff9 }, 0x10));
    expect(out).toEqual({
      ok: true,
      value: {
        metrics: { voltage_v: 220.7, power_factor: -0.999, power_w: -1234, energy_kwh: 1234.56, t1_c: -0.7 },
        state: { overheat: false, leakage: false },
      },
    });
  });

  it('omits a metric whose registers hold the "missing" value', () => {
    const out = decodeRegisters(map, regs(8, { 0x16: 0x8000 }, 0x10));
    expect(out.ok && Object.keys(out.value.metrics)).not.toContain('t1_c');
    expect(out.ok && out.value.metrics.voltage_v).toBe(0);
  });

  it('sets a flag from any of its bits', () => {
    for (const bit of [1, 2, 3, 4]) {
      const out = decodeRegisters(map, regs(8, { 0x17: 1 << bit }, 0x10));
      expect(out.ok && out.value.state).toEqual({ overheat: true, leakage: false });
    }
    const out = decodeRegisters(map, regs(8, { 0x17: 0xffe0 }, 0x10));
    expect(out.ok && out.value.state).toEqual({ overheat: false, leakage: false });
  });

  it('gives typed errors for the wrong number of registers or non-16-bit values', () => {
    expect(decodeRegisters(map, [1, 2, 3])).toMatchObject({ ok: false, error: { code: 'DEV_ERR_BYTE_COUNT' } });
    expect(decodeRegisters(map, regs(8, { 0x13: 0x10000 }, 0x10))).toMatchObject({ ok: false, error: { code: 'DEV_ERR_RANGE', path: [0x13] } });
    expect(decodeRegisters(map, regs(8, { 0x13: -1 }, 0x10))).toMatchObject({ ok: false, error: { code: 'DEV_ERR_RANGE' } });
  });

  it('encode → decode is the identity on what the registers can hold (property)', () => {
    const arb = fc.record({
      metrics: fc.record(
        {
          voltage_v: fc.integer({ min: 0, max: 0xffff }).map((n) => n / 10),
          power_factor: fc.integer({ min: -0x8000, max: 0x7fff }).map((n) => n / 1000),
          power_w: fc.integer({ min: -0x80000000, max: 0x7fffffff }),
          energy_kwh: fc.integer({ min: 0, max: 0xffffffff }).map((n) => n / 100),
          t1_c: fc.integer({ min: -0x7fff, max: 0x7fff }).map((n) => n / 10),
        },
        { requiredKeys: ['voltage_v', 'power_factor', 'power_w', 'energy_kwh'] },
      ),
      state: fc.record({ overheat: fc.boolean(), leakage: fc.boolean() }),
    });
    fc.assert(
      fc.property(arb, (sample) => {
        const values = encodeRegisters(map, sample);
        const out = decodeRegisters(map, values);
        const expected = Object.fromEntries(Object.entries(sample.metrics).map(([k, v]) => [k, v === 0 ? 0 : v]));
        expect(out).toEqual({ ok: true, value: { metrics: expected, state: sample.state } });
      }),
    );
  });

  it('decode → encode is the identity on registers, except unmapped bits and missing sentinels (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 8, maxLength: 8 }), (values) => {
        const out = decodeRegisters(map, values);
        if (!out.ok) throw new Error(out.error.message);
        const again = encodeRegisters(map, out.value);
        // Registers 0x10–0x16 carry numbers: exact. The bit word: one bit per set flag.
        expect(again.slice(0, 7)).toEqual(values.slice(0, 7));
        expect(decodeRegisters(map, again)).toEqual(out);
      }),
    );
  });
});

describe('scaleDecimals', () => {
  it.each([
    [1, 0],
    [10, 0],
    [0.1, 1],
    [0.01, 2],
    [0.001, 3],
    [0.5, 1],
    [0.25, 2],
    [1e-9, 9],
  ])('%f has %i decimals', (scale, decimals) => {
    expect(scaleDecimals(scale)).toBe(decimals);
  });

  it('rejects a scale that is not a short decimal', () => {
    expect(scaleDecimals(1 / 3)).toBeUndefined();
  });
});

describe('defineRegisterMap validation (a bad map fails at load, naming the field)', () => {
  const base: RegisterMapInput = { poll: { start: 0, count: 4 }, fields: [], bitWords: [] };
  it.each<[string, RegisterMapInput, RegExp]>([
    ['a field outside the poll', { ...base, fields: [{ address: 4, metric: 'voltage_v', type: 'u16' }] }, /outside the poll/],
    ['a 32-bit field running past the poll', { ...base, fields: [{ address: 3, metric: 'energy_kwh', type: 'u32' }] }, /outside the poll/],
    [
      'two fields on one register',
      { ...base, fields: [{ address: 0, metric: 'power_w', type: 'i32' }, { address: 1, metric: 'voltage_v', type: 'u16' }] },
      /already power_w/,
    ],
    ['a bit word on a field', { ...base, fields: [{ address: 0, metric: 'voltage_v', type: 'u16' }], bitWords: [{ address: 0, flags: { leakage: [0] } }] }, /already voltage_v/],
    ['a bit beyond 15', { ...base, bitWords: [{ address: 0, flags: { leakage: [16] } }] }, /bitWords/],
    ['one bit for two flags', { ...base, bitWords: [{ address: 0, flags: { leakage: [0], overload: [0] } }] }, /already sets leakage/],
    ['a scale that is not a decimal', { ...base, fields: [{ address: 0, metric: 'voltage_v', type: 'u16', scale: 1 / 3 }] }, /scale/],
    ['a metric twice', { ...base, fields: [{ address: 0, metric: 'voltage_v', type: 'u16' }, { address: 1, metric: 'voltage_v', type: 'u16' }] }, /twice/],
    ['a missing value too wide for its type', { ...base, fields: [{ address: 0, metric: 'voltage_v', type: 'u16', missing: 0x10000 }] }, /missing/],
    ['too many registers in one poll', { ...base, poll: { start: 0, count: 126 } }, /poll/],
  ])('refuses %s', (_name, input, message) => {
    expect(() => defineRegisterMap(input)).toThrow(message);
  });
});

describe('the ERS-1 map is SPEC §4.2', () => {
  it('maps every alarm bit and any fault bit', () => {
    expect(mapFlags(ERS1_REGISTER_MAP)).toEqual(['leakage', 'overheat', 'arc_fault', 'overload', 'over_voltage', 'under_voltage', 'short_circuit', 'tripped', 'fault']);
    const word = (alarm: number, fault = 0): Record<string, boolean> => {
      const out = decodeRegisters(ERS1_REGISTER_MAP, regs(29, { 0: alarm, 1: fault }));
      if (!out.ok) throw new Error(out.error.message);
      return Object.fromEntries(Object.entries(out.value.state).filter(([, v]) => v));
    };
    expect(word(1 << 0)).toEqual({ leakage: true });
    for (const b of [1, 2, 3, 4]) expect(word(1 << b)).toEqual({ overheat: true });
    expect(word(1 << 5)).toEqual({ arc_fault: true });
    expect(word(1 << 6)).toEqual({ overload: true });
    expect(word(1 << 7)).toEqual({ over_voltage: true });
    expect(word(1 << 8)).toEqual({ under_voltage: true });
    expect(word(1 << 9)).toEqual({ short_circuit: true });
    expect(word(1 << 14)).toEqual({ tripped: true });
    for (const b of [10, 11, 12, 13, 15]) expect(word(1 << b)).toEqual({});
    for (let b = 0; b < 16; b++) expect(word(0, 1 << b)).toEqual({ fault: true });
  });
});

// Adding a meter is a data change: an ADW300-like three-phase meter's single-phase subset, at
// other addresses, with other scales and a different "no probe" value, through the same code.
describe('a second meter (ADW300-like) from a map alone', () => {
  const ADW300_MAP = defineRegisterMap({
    poll: { start: 0x0100, count: 12 },
    fields: [
      { address: 0x0100, metric: 'voltage_v', type: 'u16', scale: 0.1 },
      { address: 0x0101, metric: 'current_a', type: 'u16', scale: 0.01 },
      { address: 0x0102, metric: 'power_w', type: 'i32', scale: 0.1 },
      { address: 0x0104, metric: 'power_factor', type: 'i16', scale: 0.001 },
      { address: 0x0105, metric: 'frequency_hz', type: 'u16', scale: 0.01 },
      { address: 0x0106, metric: 'energy_kwh', type: 'u32', scale: 0.001 },
      { address: 0x0108, metric: 'residual_ma', type: 'u16', scale: 0.1 },
      { address: 0x0109, metric: 't1_c', type: 'i16', scale: 0.1, missing: 0xffff },
    ],
    bitWords: [
      { address: 0x010a, flags: { over_voltage: [0], under_voltage: [1], overload: [2], leakage: [3], overheat: [4] } },
      { address: 0x010b, flags: { tripped: [0] } },
    ],
  });
  const adw300 = defineModbusMeter({ id: 'adw300-test', description: 'test only', heartbeatMs: 5000, map: ADW300_MAP });

  it('decodes with the generic decoder', () => {
    const values = regs(12, { 0x100: 2311, 0x101: 1234, 0x102: 0, 0x103: 28512, 0x104: 990, 0x105: 5000, 0x106: 0x0001, 0x107: 0x86a1, 0x108: 305, 0x109: 0xffff, 0x10a: 0b01000, 0x10b: 1 }, 0x100);
    expect(decodeRegisters(ADW300_MAP, values)).toEqual({
      ok: true,
      value: {
        metrics: { voltage_v: 231.1, current_a: 12.34, power_w: 2851.2, power_factor: 0.99, frequency_hz: 50, energy_kwh: 100.001, residual_ma: 30.5 },
        state: { over_voltage: false, under_voltage: false, overload: false, leakage: true, overheat: false, tripped: true },
      },
    });
  });

  it('is a whole ModbusModel: frame in, reading with rising-edge events out', () => {
    expect(adw300.poll).toEqual({ start: 0x0100, count: 12 });
    expect(adw300.produces.events).toEqual(['leakage', 'overheat', 'overload', 'over_voltage', 'under_voltage', 'tripped']);
    const frame = buildReadResponse(3, adw300.encodeRegisters({ metrics: { voltage_v: 229.9, t1_c: 41.5 }, state: { leakage: true, tripped: true } }));
    const result = adw300.decode(frame, { deviceId: 'ADW-1', receivedAt: 1000, address: 3, previous: { tripped: true } });
    expect(result).toMatchObject({ ok: true, value: { model: 'adw300-test', metrics: { voltage_v: 229.9, t1_c: 41.5 }, events: ['leakage'] } });
    expect(result.ok && result.value.state.comm_fault).toBe(false);
    expect(adw300.decode(frame, { deviceId: 'ADW-1', receivedAt: 1000, address: 4 })).toMatchObject({ ok: false, error: { code: 'DEV_ERR_SLAVE_ADDRESS' } });
  });

  it('refuses a map that names a metric or flag outside the electrical vocabulary, or comm_fault', () => {
    const bad = (input: RegisterMapInput) => () => defineModbusMeter({ id: 'x', description: 'x', heartbeatMs: 1, map: defineRegisterMap(input) });
    expect(bad({ poll: { start: 0, count: 1 }, fields: [{ address: 0, metric: 'battery_pct', type: 'u16' }], bitWords: [] })).toThrow(/battery_pct/);
    expect(bad({ poll: { start: 0, count: 1 }, fields: [], bitWords: [{ address: 0, flags: { smoke: [0] } }] })).toThrow(/smoke/);
    expect(bad({ poll: { start: 0, count: 1 }, fields: [], bitWords: [{ address: 0, flags: { comm_fault: [0] } }] })).toThrow(/comm_fault/);
  });
});
