/**
 * The ERS-1 electrical fire monitoring sensor's holding registers, SPEC §4.2, as data. All
 * values big-endian, 32-bit values high word first, addresses 0-based as on the wire.
 */
import { ALL_BITS, defineRegisterMap } from '../../modbus/register-map.js';

export const ERS1_REGISTERS = {
  ALARM_WORD: 0x0001,
  FAULT_WORD: 0x0002,
  /** R/W with FC06, mA, default 300 (SPEC §4.2). */
  LEAKAGE_SETPOINT: 0x0100,
} as const;

/** No probe fitted on a temperature channel (SPEC §4.2): the metric is omitted. */
export const ERS1_NO_PROBE = 0x8000;

export const ERS1_REGISTER_MAP = defineRegisterMap({
  // SPEC §4.2: one poll = FC03 0x0001–0x001D, `01 03 00 01 00 1D` + CRC.
  poll: { start: 0x0001, count: 29 },
  bitWords: [
    {
      address: ERS1_REGISTERS.ALARM_WORD,
      flags: {
        leakage: [0],
        // b1–b4: over-temperature on T1–T4; the reading says which probe through t1_c…t4_c.
        overheat: [1, 2, 3, 4],
        arc_fault: [5],
        overload: [6],
        over_voltage: [7],
        under_voltage: [8],
        short_circuit: [9],
        tripped: [14],
      },
    },
    {
      // b0 CT open, b1 CT short, b2–b5 probe T1–T4 open. Bits the spec does not name count
      // too: a newer firmware's fault is still a fault ("any bit", see the report).
      address: ERS1_REGISTERS.FAULT_WORD,
      flags: { fault: ALL_BITS },
    },
  ],
  fields: [
    { address: 0x0010, metric: 'voltage_v', type: 'u16', scale: 0.1 },
    { address: 0x0011, metric: 'current_a', type: 'u16', scale: 0.001 },
    { address: 0x0012, metric: 'power_w', type: 'i32', scale: 1 },
    { address: 0x0014, metric: 'power_factor', type: 'i16', scale: 0.001 },
    { address: 0x0015, metric: 'frequency_hz', type: 'u16', scale: 0.01 },
    { address: 0x0016, metric: 'energy_kwh', type: 'u32', scale: 0.01 },
    { address: 0x0018, metric: 'residual_ma', type: 'u16', scale: 1 },
    { address: 0x0019, metric: 't1_c', type: 'i16', scale: 0.1, missing: ERS1_NO_PROBE },
    { address: 0x001a, metric: 't2_c', type: 'i16', scale: 0.1, missing: ERS1_NO_PROBE },
    { address: 0x001b, metric: 't3_c', type: 'i16', scale: 0.1, missing: ERS1_NO_PROBE },
    { address: 0x001c, metric: 't4_c', type: 'i16', scale: 0.1, missing: ERS1_NO_PROBE },
    { address: 0x001d, metric: 'arc_count', type: 'u16', scale: 1 },
  ],
  settings: [{ address: ERS1_REGISTERS.LEAKAGE_SETPOINT, name: 'leakage_setpoint_ma', type: 'u16', default: 300, writable: true }],
});
