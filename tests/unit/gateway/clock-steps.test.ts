import { describe, expect, it } from 'vitest';
import { buildReadResponse, parseRequest } from '../../../devices/modbus/slave.js';
import { model as ers1 } from '../../../devices/models/elec-ers1/index.js';
import { createRateLimiter } from '../../../gateway/broker/token-bucket.js';
import { createModbusMaster } from '../../../gateway/serial/modbus-master.js';
import { createLogThrottle } from '../../../ingest/log-throttle.js';
import type { SerialClock } from '../../../gateway/serial/bus.js';
import { createFakeBus, createFakeClock, meterRecord, silentLogger } from './serial/fakes.js';

// docs/SPEC-NOTES.md "Clock steps": parts that measure time on the wall clock must not stop for
// an hour when NTP steps it back by an hour (the rate limit, the Modbus master, the log throttle).

const HOUR = 3_600_000;

describe('the device rate limit across a step back', () => {
  it('refills from the new time on, instead of refusing the device until the clock is back where it was', () => {
    let now = Date.UTC(2024, 11, 4, 2, 0, 0);
    const limiter = createRateLimiter({ perSecond: 1, burst: 2 }, () => now);
    expect([limiter.take('SMK-1'), limiter.take('SMK-1'), limiter.take('SMK-1')]).toEqual([true, true, false]);
    now -= HOUR;
    expect(limiter.take('SMK-1')).toBe(false); // a step refills nothing
    now += 1_000;
    expect(limiter.take('SMK-1')).toBe(true); // one second later: one token
    expect(limiter.take('SMK-1')).toBe(false);
  });
});

describe('the Modbus master across a step back', () => {
  it('keeps polling every meter once per interval', async () => {
    const fake = createFakeClock();
    let offset = 0;
    const clock: SerialClock = { now: () => fake.now() + offset, setTimeout: (fn, ms) => fake.setTimeout(fn, ms), clearTimeout: (h) => fake.clearTimeout(h) };
    const bus = createFakeBus(fake);
    const registers = ers1.encodeRegisters({ metrics: { voltage_v: 221.4, current_a: 1.2, t1_c: 30 }, state: {} });
    bus.responder = (request) => {
      const parsed = parseRequest(request);
      return parsed.ok ? { chunks: [buildReadResponse(parsed.value.slave, registers)], delayMs: 75 } : undefined;
    };
    const readings: number[] = [];
    const master = createModbusMaster({
      bus,
      devices: [meterRecord('ELC-1', 1), meterRecord('ELC-2', 2)],
      modelFor: () => ers1,
      previousState: () => undefined,
      clock,
      logger: silentLogger,
      onReading: () => void readings.push(fake.now()),
      onReject: () => undefined,
    });
    master.start();
    await fake.advance(5_000);
    const before = readings.length;
    expect(before).toBeGreaterThanOrEqual(8);
    offset = -HOUR;
    await fake.advance(10_000);
    await master.stop();
    // Two meters at 1 s: about 20 polls in 10 s of real time, not none for an hour.
    expect(readings.length - before).toBeGreaterThanOrEqual(18);
  });
});

describe('the "logged once a minute" throttle across a step back', () => {
  it('logs again after the real minute, not after the clock is back where it was', () => {
    let now = Date.UTC(2024, 11, 4, 2, 0, 0);
    const throttle = createLogThrottle(() => now);
    expect(throttle.allow('SMK-1').ok).toBe(true);
    now += 30_000;
    expect(throttle.allow('SMK-1').ok).toBe(false);
    now -= HOUR;
    expect(throttle.allow('SMK-1')).toEqual({ ok: true, suppressed: 1 });
    now += 30_000;
    expect(throttle.allow('SMK-1').ok).toBe(false);
  });
});
