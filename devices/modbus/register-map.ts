/**
 * A Modbus meter as data (STYLE "Modbus meters are data"): the one poll, the numeric registers
 * that become metrics, the bit words that become state flags, and the set-points. One generic
 * decoder turns polled register values into metrics and state; its reverse lets a simulator
 * produce the registers of a sample. Adding a meter means writing a map, not a codec.
 */
import { z } from 'zod';
import { fail, ok, type Result } from '../errors.js';
import type { EncodeSample } from '../model.js';
import { MAX_READ_REGISTERS, hex4, isU16 } from './frames.js';

export const REGISTER_TYPES = ['u16', 'i16', 'u32', 'i32'] as const;
export type RegisterType = (typeof REGISTER_TYPES)[number];

/** Every bit of a word, for a word where any bit set means one flag (e.g. a fault word). */
export const ALL_BITS: readonly number[] = Array.from({ length: 16 }, (_, i) => i);

const MAX_DECIMALS = 9;
const u16 = z.number().int().min(0).max(0xffff);

export function registerWidth(type: RegisterType): 1 | 2 {
  return type === 'u32' || type === 'i32' ? 2 : 1;
}

/** The number of decimals a scale carries: 0.1 → 1, 0.001 → 3, 1 → 0, 10 → 0; undefined beyond 9. */
export function scaleDecimals(scale: number): number | undefined {
  for (let d = 0; d <= MAX_DECIMALS; d++) {
    const scaled = scale * 10 ** d;
    // Relative tolerance: 0.001 × 1000 may land an ulp off 1, while 1/3 × 10^9 is a third off.
    if (Math.round(scaled) >= 1 && Math.abs(scaled - Math.round(scaled)) <= 1e-12 * scaled) return d;
  }
  return undefined;
}

export const NumericFieldSchema = z
  .object({
    /** First register (0-based protocol address); a 32-bit field takes this and the next, high word first. */
    address: u16,
    /** Metric name in the kind's vocabulary, unit in the name (SPEC §2). */
    metric: z.string().min(1),
    type: z.enum(REGISTER_TYPES),
    /** Engineering value = raw × scale; a decimal such as 0.1 or 0.001. */
    scale: z.number().positive().finite().default(1),
    /** Raw register value (unsigned, as on the wire: 0x8000 even for an i16) meaning "not present": the metric is omitted. */
    missing: z.number().int().nonnegative().optional(),
  })
  .readonly();
export type NumericField = z.infer<typeof NumericFieldSchema>;

export const BitWordSchema = z
  .object({
    address: u16,
    /** State flag → the bits (0 = least significant) that set it; several bits may set one flag. */
    flags: z.record(z.string().min(1), z.array(z.number().int().min(0).max(15)).min(1).readonly()).readonly(),
  })
  .readonly();
export type BitWord = z.infer<typeof BitWordSchema>;

/** A configuration register outside the poll (read on demand, written with FC06). */
export const SettingSchema = z
  .object({
    address: u16,
    name: z.string().min(1),
    type: z.enum(['u16', 'i16']),
    default: z.number().int(),
    writable: z.boolean().default(false),
  })
  .readonly();
export type Setting = z.infer<typeof SettingSchema>;

const RANGES: Readonly<Record<RegisterType, readonly [number, number]>> = {
  u16: [0, 0xffff],
  i16: [-0x8000, 0x7fff],
  u32: [0, 0xffffffff],
  i32: [-0x80000000, 0x7fffffff],
};

export const RegisterMapSchema = z
  .object({
    /** The one FC03 read that fetches everything below. */
    poll: z.object({ start: u16, count: z.number().int().min(1).max(MAX_READ_REGISTERS) }).readonly(),
    fields: z.array(NumericFieldSchema).readonly(),
    bitWords: z.array(BitWordSchema).readonly(),
    settings: z.array(SettingSchema).readonly().default([]),
  })
  .superRefine((map, ctx) => {
    const end = map.poll.start + map.poll.count;
    if (end > 0x10000) ctx.addIssue({ code: 'custom', path: ['poll'], message: 'poll runs past register 0xFFFF' });
    const owner = new Map<number, string>();
    const claim = (address: number, width: number, what: string, path: (string | number)[]): void => {
      for (let a = address; a < address + width; a++) {
        if (a < map.poll.start || a >= end) {
          ctx.addIssue({ code: 'custom', path, message: `${what}: register ${hex4(a)} is outside the poll ${hex4(map.poll.start)}+${map.poll.count}` });
          return;
        }
        const other = owner.get(a);
        if (other !== undefined) {
          ctx.addIssue({ code: 'custom', path, message: `${what}: register ${hex4(a)} is already ${other}` });
          return;
        }
        owner.set(a, what);
      }
    };
    const metrics = new Set<string>();
    map.fields.forEach((f, i) => {
      claim(f.address, registerWidth(f.type), f.metric, ['fields', i]);
      if (metrics.has(f.metric)) ctx.addIssue({ code: 'custom', path: ['fields', i, 'metric'], message: `${f.metric} appears twice` });
      metrics.add(f.metric);
      if (scaleDecimals(f.scale) === undefined) {
        ctx.addIssue({ code: 'custom', path: ['fields', i, 'scale'], message: `scale ${f.scale} is not a decimal of at most ${MAX_DECIMALS} places` });
      }
      const maxRaw = registerWidth(f.type) === 2 ? 0xffffffff : 0xffff;
      if (f.missing !== undefined && f.missing > maxRaw) {
        ctx.addIssue({ code: 'custom', path: ['fields', i, 'missing'], message: `does not fit a ${f.type}` });
      }
    });
    map.bitWords.forEach((w, i) => {
      claim(w.address, 1, `bit word ${hex4(w.address)}`, ['bitWords', i]);
      const used = new Map<number, string>();
      for (const [flag, bits] of Object.entries(w.flags)) {
        for (const bit of bits) {
          const other = used.get(bit);
          if (other !== undefined) ctx.addIssue({ code: 'custom', path: ['bitWords', i, 'flags', flag], message: `bit ${bit} already sets ${other}` });
          used.set(bit, flag);
        }
      }
    });
    const settings = new Set<number>();
    map.settings.forEach((s, i) => {
      if (settings.has(s.address)) ctx.addIssue({ code: 'custom', path: ['settings', i, 'address'], message: 'appears twice' });
      settings.add(s.address);
      const [min, max] = RANGES[s.type];
      if (s.default < min || s.default > max) ctx.addIssue({ code: 'custom', path: ['settings', i, 'default'], message: `does not fit a ${s.type}` });
    });
  })
  .readonly();
export type RegisterMap = z.infer<typeof RegisterMapSchema>;
export type RegisterMapInput = z.input<typeof RegisterMapSchema>;

/**
 * Validates a map once, where it is defined (module load). A bad map is a programming error in
 * the catalogue: it throws, naming the path of the bad field, so the catalogue test fails at once.
 */
export function defineRegisterMap(input: RegisterMapInput): RegisterMap {
  const parsed = RegisterMapSchema.safeParse(input);
  if (!parsed.success) throw new Error(`invalid register map: ${z.prettifyError(parsed.error)}`);
  return parsed.data;
}

/** The state flags a map can set, in map order. */
export function mapFlags(map: RegisterMap): string[] {
  const flags = new Set<string>();
  for (const w of map.bitWords) for (const flag of Object.keys(w.flags)) flags.add(flag);
  return [...flags];
}

export function mapMetrics(map: RegisterMap): string[] {
  return map.fields.map((f) => f.metric);
}

export interface DecodedRegisters {
  readonly metrics: Record<string, number>;
  /** Every flag of the map, true when any of its bits is set. */
  readonly state: Record<string, boolean>;
}

/** Unsigned raw value of a field: one register, or two with the high word first. */
function rawAt(values: readonly number[], offset: number, width: 1 | 2): number {
  const hi = values[offset] ?? 0;
  return width === 1 ? hi : hi * 0x10000 + (values[offset + 1] ?? 0);
}

function signed(raw: number, type: RegisterType): number {
  if (type === 'i16') return raw >= 0x8000 ? raw - 0x10000 : raw;
  if (type === 'i32') return raw >= 0x80000000 ? raw - 0x100000000 : raw;
  return raw;
}

/**
 * Raw integer × scale as the decimal a person reads: 2203 × 0.1 → 220.3, not
 * 220.30000000000001. The scale is split into an integer multiplier and a power of ten; an
 * integer divided by an exact power of ten rounds, in IEEE 754, to the double nearest that decimal.
 */
function scaleValue(raw: number, scale: number): number {
  const decimals = scaleDecimals(scale) ?? 0;
  const divisor = 10 ** decimals;
  return (raw * Math.round(scale * divisor)) / divisor;
}

/**
 * Register values of `map.poll`, in order → metrics and state flags. Wrong-length or
 * non-16-bit input is a typed error, never an exception.
 */
export function decodeRegisters(map: RegisterMap, values: readonly number[]): Result<DecodedRegisters> {
  if (values.length !== map.poll.count) {
    return fail('DEV_ERR_BYTE_COUNT', `${values.length} registers, the map polls ${map.poll.count}`);
  }
  const bad = values.findIndex((v) => !isU16(v));
  if (bad >= 0) return fail('DEV_ERR_RANGE', `register ${hex4(map.poll.start + bad)} is not a 16-bit value`, [map.poll.start + bad]);
  const metrics: Record<string, number> = {};
  for (const f of map.fields) {
    const raw = rawAt(values, f.address - map.poll.start, registerWidth(f.type));
    if (f.missing !== undefined && raw === f.missing) continue;
    metrics[f.metric] = scaleValue(signed(raw, f.type), f.scale);
  }
  const state: Record<string, boolean> = {};
  for (const w of map.bitWords) {
    const word = values[w.address - map.poll.start] ?? 0;
    for (const [flag, bits] of Object.entries(w.flags)) {
      const set = bits.some((b) => (word & (1 << b)) !== 0);
      state[flag] = (state[flag] ?? false) || set;
    }
  }
  return ok({ metrics, state });
}

/** Engineering value → raw integer of a field; throws RangeError when it cannot be represented. */
function toRaw(f: NumericField, value: number): number {
  const decimals = scaleDecimals(f.scale) ?? 0;
  const divisor = 10 ** decimals;
  const n = Math.round((value * divisor) / Math.round(f.scale * divisor));
  const [min, max] = RANGES[f.type];
  if (!Number.isFinite(value) || n < min || n > max) throw new RangeError(`${f.metric} = ${value} does not fit a ${f.type} × ${f.scale}`);
  const raw = n < 0 ? n + (registerWidth(f.type) === 2 ? 0x100000000 : 0x10000) : n;
  if (raw === f.missing) throw new RangeError(`${f.metric} = ${value} encodes as the "missing" value ${hex4(raw)}`);
  return raw;
}

/**
 * The reverse, for simulators: the register values of `map.poll` that decode to `sample`. A
 * metric the sample lacks is written as the field's "missing" value (or 0); a flag that several
 * bits set is encoded as its lowest bit. Unmapped registers are 0. The sample is the simulator's
 * own data, not wire input: a value the registers cannot hold throws a RangeError.
 */
export function encodeRegisters(map: RegisterMap, sample: EncodeSample): number[] {
  const values = new Array<number>(map.poll.count).fill(0);
  for (const f of map.fields) {
    const offset = f.address - map.poll.start;
    const value = sample.metrics?.[f.metric];
    const raw = value === undefined ? (f.missing ?? 0) : toRaw(f, value);
    if (registerWidth(f.type) === 2) {
      values[offset] = Math.floor(raw / 0x10000);
      values[offset + 1] = raw % 0x10000;
    } else {
      values[offset] = raw;
    }
  }
  for (const w of map.bitWords) {
    const offset = w.address - map.poll.start;
    let word = 0;
    for (const [flag, bits] of Object.entries(w.flags)) {
      if (sample.state?.[flag] === true) word |= 1 << Math.min(...bits);
    }
    values[offset] = word;
  }
  return values;
}
