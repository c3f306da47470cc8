import { describe, expect, it } from 'vitest';
import { MAX_CLOCK_SKEW_MS, ReadingSchema, chooseTimestamp, isAlarmReading } from '../../../devices/reading.js';

describe('chooseTimestamp (SPEC §2)', () => {
  const now = 1_733_300_000_012;
  it('keeps a plausible device time', () => {
    expect(chooseTimestamp(now - 5_000, now)).toBe(now - 5_000);
    expect(chooseTimestamp(now + MAX_CLOCK_SKEW_MS, now)).toBe(now + MAX_CLOCK_SKEW_MS);
  });
  it('falls back to receivedAt beyond ±24 h, for non-integers and for negative times', () => {
    expect(chooseTimestamp(now - MAX_CLOCK_SKEW_MS - 1, now)).toBe(now);
    expect(chooseTimestamp(undefined, now)).toBe(now);
    expect(chooseTimestamp(1.5, now)).toBe(now);
    // Found by the decode-never-throws property: `{"ts":-1,"event":"sos"}` just after the epoch
    // gave an SOS reading the schema refuses, which would have been dead-lettered.
    expect(chooseTimestamp(-1, 0)).toBe(0);
  });
});

describe('ReadingSchema', () => {
  const base = { deviceId: 'SMK-1', model: 'smoke-json', kind: 'smoke', ts: 1, receivedAt: 1, metrics: {}, state: {}, events: [], place: { grid: '110101013001002' } };
  it('accepts the vocabulary of the kind and fills place defaults', () => {
    const r = ReadingSchema.parse({ ...base, metrics: { battery_pct: 80 }, state: { smoke: true }, events: ['fire_alarm'] });
    expect(r.place).toEqual({ grid: '110101013001002', building: '', room: '' });
  });
  it('refuses metrics, flags and events of another kind, and bad grid codes', () => {
    expect(ReadingSchema.safeParse({ ...base, metrics: { residual_ma: 3 } }).success).toBe(false);
    expect(ReadingSchema.safeParse({ ...base, state: { short_circuit: true } }).success).toBe(false);
    expect(ReadingSchema.safeParse({ ...base, events: ['sos'] }).success).toBe(false);
    expect(ReadingSchema.safeParse({ ...base, place: { grid: '11010101300100' } }).success).toBe(false);
  });
  it('knows the alarm lane', () => {
    expect(isAlarmReading({ events: ['heartbeat', 'sos'] })).toBe(true);
    expect(isAlarmReading({ events: ['battery_low'] })).toBe(false);
  });
});
