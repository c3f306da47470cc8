import { describe, expect, it } from 'vitest';
import { hexToBytes, loadFixtures, type Fixture } from '../../../../devices/fixtures.js';
import type { RfPress } from '../../../../devices/model.js';
import { model } from '../../../../devices/models/pager-rf/index.js';
import { ReadingSchema } from '../../../../devices/reading.js';
import { createRfFrameParser } from '../../../../devices/rf/frame-parser.js';
import { createRfReceiver } from '../../../../devices/rf/receiver.js';
import { runRfStream, type RfStream } from '../../../../devices/rf/run-stream.js';

const RECEIVED_AT = 1733300000000;
const press = (key: number, at = RECEIVED_AT): RfPress => ({ id: '5A3C1', key, words: 1, at });
const ctx = (previous?: Record<string, boolean>) => ({ deviceId: 'PGR-RF-0001', receivedAt: RECEIVED_AT, previous });

describe('pager-rf model', () => {
  it('is an rf-bridge pager whose 2x heartbeat is 35 days (SPEC §6)', () => {
    expect(model).toMatchObject({ id: 'pager-rf', kind: 'pager', transport: 'rf-bridge' });
    expect(2 * model.heartbeatMs).toBe(35 * 24 * 3600 * 1000);
  });

  it.each([
    [0x1, 'sos'],
    [0x2, 'service_call'],
    [0x4, 'family_call'],
    [0x8, 'cancel'],
    [0xe, 'test'],
    [0xf, 'battery_low'],
  ])('key %i is %s', (key, event) => {
    const r = model.decode(press(key), ctx());
    expect(r).toEqual({
      ok: true,
      value: {
        deviceId: 'PGR-RF-0001',
        model: 'pager-rf',
        kind: 'pager',
        ts: RECEIVED_AT,
        receivedAt: RECEIVED_AT,
        metrics: {},
        state: { battery_low: event === 'battery_low' },
        events: [event],
      },
    });
    expect(model.keyFor({ events: [event] })).toBe(key);
    expect(model.produces.events).toContain(event);
  });

  it.each([0x0, 0x3, 0x5, 0x6, 0x7, 0x9, 0xa, 0xb, 0xc, 0xd])('key %i is DEV_ERR_UNKNOWN_CODE', (key) => {
    const r = model.decode(press(key), ctx());
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error.code).toBe('DEV_ERR_UNKNOWN_CODE');
  });

  it('battery_low is sticky: other keys carry it, a repeat battery_low has no event', () => {
    const low = { battery_low: true };
    expect(model.decode(press(0xe), ctx(low))).toMatchObject({ ok: true, value: { state: low, events: ['test'] } });
    expect(model.decode(press(0x1), ctx(low))).toMatchObject({ ok: true, value: { state: low, events: ['sos'] } });
    expect(model.decode(press(0xf), ctx(low))).toMatchObject({ ok: true, value: { state: low, events: [] } });
    expect(model.decode(press(0xf), ctx({ battery_low: false }))).toMatchObject({ ok: true, value: { state: low, events: ['battery_low'] } });
  });

  it('encodeFrame gives the SPEC §4.3 example for 5A3C1 / sos, and parses back', () => {
    const frame = model.encodeFrame('5A3C1', 0x1);
    expect(frame).toEqual(hexToBytes('AA A4 2A 62 01 5E 04 1A 5A 3C 11 55'));
    expect(createRfFrameParser().push(model.encodeFrame('00F0A', 0xe))).toMatchObject([{ id: '00F0A', key: 0xe }]);
    expect(() => model.encodeFrame('5a3c1', 1)).toThrow(RangeError);
    expect(() => model.encodeFrame('5A3C1', 16)).toThrow(RangeError);
  });

  it('keyFor refuses events a pager-rf cannot send', () => {
    expect(() => model.keyFor({ events: ['fall'] })).toThrow(/fall/);
    expect(() => model.keyFor({})).toThrow(RangeError);
  });
});

describe('rf receiver and runRfStream', () => {
  it('receiver: bytes in, presses and counters out', () => {
    const rx = createRfReceiver();
    const frame = model.encodeFrame('5A3C1', 0x1);
    expect(rx.push(Buffer.concat([hexToBytes('00'), frame, frame.subarray(0, 3)]), 0)).toEqual([]);
    expect(rx.push(frame.subarray(3), 40)).toEqual([{ id: '5A3C1', key: 1, words: 2, at: 0 }]);
    expect(rx.counters).toMatchObject({ frames: 2, skippedBytes: 1, rejectedCandidates: 0, words: 2, presses: 1, straySos: 0 });
  });

  it('an unknown key among valid presses is an error and does not disturb the others', () => {
    const f = (key: number) => model.encodeFrame('5A3C1', key).toString('hex');
    const result = runRfStream(
      [
        { at: 0, hex: f(0x2) },
        { at: 100, hex: f(0x3) + f(0x3) },
        { at: 200, hex: f(0x1) + f(0x1) },
      ],
      { deviceId: 'PGR-RF-0001', receivedAt: RECEIVED_AT, rfIds: { '5A3C1': 'PGR-RF-0001' } },
      model,
    );
    expect(result.readings.map((r) => r.events)).toEqual([['service_call'], ['sos']]);
    expect(result.errors.map((e) => [e.code, e.press.key, e.deviceId])).toEqual([['DEV_ERR_UNKNOWN_CODE', 3, 'PGR-RF-0001']]);
  });

  const fixtures = loadFixtures('pager-rf');
  const place = { grid: '110101013001002', building: '5', room: '302' };

  const streamOf = (f: Fixture): RfStream => {
    if (!('stream' in f.input)) throw new Error(`${f.name}: rf-bridge fixtures take a stream input`);
    return f.input.stream;
  };

  it.each(fixtures.map((f) => [f.name, f] as const))('fixture: %s', (_name, fixture) => {
    const result = runRfStream(streamOf(fixture), fixture.context, model);
    for (const r of result.readings) expect(ReadingSchema.safeParse({ ...r, place }).success).toBe(true);
    const want = fixture.expect;
    if (!('readings' in want)) throw new Error(`${fixture.name}: rf-bridge fixtures expect readings`);
    expect(result.readings).toEqual(want.readings);
    expect(result.unregistered).toEqual(want.unregistered ?? []);
    expect(result.errors.map((e) => e.code)).toEqual(want.errors ?? []);
  });

  it('the fixtures cover everything the model produces', () => {
    const readings = fixtures.flatMap((f) => runRfStream(streamOf(f), f.context, model).readings);
    const events = new Set(readings.flatMap((r) => r.events));
    for (const e of model.produces.events) expect(events).toContain(e);
    for (const s of model.produces.states) {
      expect(readings.some((r) => r.state[s] === true)).toBe(true);
      expect(readings.some((r) => r.state[s] === false)).toBe(true);
    }
  });
});
