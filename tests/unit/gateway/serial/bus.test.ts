import { rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createSerialBus, systemSerialClock, type SerialBus } from '../../../../gateway/serial/bus.js';
import { makeTempDir } from '../../../helpers/tmp.js';
import { createFakeClock, createFakePortFactory, silentLogger, type FakeClock, type FakePortFactory } from './fakes.js';

function rig(outcomes: string[] = []): { clock: FakeClock; ports: FakePortFactory; bus: SerialBus; events: string[] } {
  const clock = createFakeClock();
  const ports = createFakePortFactory(clock);
  ports.outcomes = outcomes;
  const bus = createSerialBus({ id: 'rs485-1', path: '/dev/fake', baudRate: 9600, logger: silentLogger, clock, openPort: ports.openPort, watchIntervalMs: 0 });
  const events: string[] = [];
  bus.onUp(() => events.push('up'));
  bus.onDown((reason) => events.push(`down: ${reason}`));
  return { clock, ports, bus, events };
}

const since = (times: number[]): number[] => times.slice(1).map((t, i) => t - (times[i] ?? 0));

describe('serial bus', () => {
  it('opens, delivers data with its arrival time, writes and drains', async () => {
    const { clock, ports, bus, events } = rig();
    const chunks: [string, number][] = [];
    bus.onData((chunk, at) => chunks.push([chunk.toString('hex'), at]));
    await bus.start();
    expect(bus.state).toBe('open');
    expect(events).toEqual(['up']);
    ports.handlers()?.data(Buffer.from([1, 2]));
    expect(chunks).toEqual([['0102', clock.now()]]);
    await bus.write(Buffer.from([9]));
    expect(ports.writes).toEqual([Buffer.from([9])]);
    await bus.stop();
    expect(bus.state).toBe('closed');
    await expect(bus.write(Buffer.from([9]))).rejects.toThrow(/not open/);
  });

  it('a first open that fails is down (once) and retried at 1, 2, 4, 8, 16, 30, 30 s (SPEC §4)', async () => {
    const { clock, ports, bus, events } = rig(Array<string>(8).fill('ENOENT: no such file'));
    await bus.start();
    expect(bus.state).toBe('reopening');
    await clock.advance(200_000);
    expect(since(ports.opens)).toEqual([1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000]);
    expect(bus.state).toBe('open');
    expect(events).toEqual(['down: open failed: ENOENT: no such file', 'up']);
    expect(bus.health()).toMatchObject({ opens: 1, downs: 1 });
    await bus.stop();
  });

  it('an error on an open port: down, reopen after 1 s; a port that stayed up starts the backoff afresh', async () => {
    const { clock, ports, bus, events } = rig();
    await bus.start();
    await clock.advance(60_000);
    ports.handlers()?.error(new Error('EIO'));
    ports.handlers()?.close(); // the same outage reported twice by serialport
    expect(events).toEqual(['up', 'down: port error: EIO']);
    expect(ports.closed).toBe(1);
    await clock.advance(999);
    expect(ports.opens).toHaveLength(1);
    await clock.advance(1);
    expect(ports.opens).toHaveLength(2);
    expect(events).toEqual(['up', 'down: port error: EIO', 'up']);
    await bus.stop();
  });

  it('a failed write takes the bus down and rejects', async () => {
    const { ports, bus, events } = rig();
    await bus.start();
    ports.failWrites = true;
    await expect(bus.write(Buffer.from([1]))).rejects.toThrow(/EIO/);
    expect(bus.state).toBe('reopening');
    expect(events).toEqual(['up', 'down: write failed: EIO: i/o error, write']);
    await bus.stop();
  });

  it('a flapping port (lost right after each open) keeps doubling its backoff', async () => {
    const { clock, ports, bus } = rig();
    await bus.start();
    for (let i = 1; i <= 4; i++) {
      ports.handlers()?.close();
      await clock.advanceUntil(() => ports.opens.length === i + 1, 60_000);
    }
    expect(since(ports.opens)).toEqual([1_000, 2_000, 4_000, 8_000]);
    await bus.stop();
  });

  it('stop() cancels the reopen timer: nothing opens afterwards', async () => {
    const { clock, ports, bus } = rig(['ENOENT']);
    await bus.start();
    await bus.stop();
    await clock.advance(120_000);
    expect(ports.opens).toHaveLength(1);
    expect(clock.pending()).toBe(0);
  });

  it('a listener that throws does not keep the others from the event', async () => {
    const { ports, bus } = rig();
    const seen: number[] = [];
    bus.onData(() => {
      throw new Error('consumer bug');
    });
    bus.onData((chunk) => seen.push(chunk.length));
    await bus.start();
    ports.handlers()?.data(Buffer.from([1, 2, 3]));
    expect(seen).toEqual([3]);
    await bus.stop();
  });

  describe('path watch (a listen-only bus never sees a write fail)', () => {
    const waitFor = async (predicate: () => boolean, ms: number): Promise<void> => {
      const deadline = Date.now() + ms;
      while (!predicate()) {
        if (Date.now() > deadline) throw new Error(`not within ${ms} ms`);
        await new Promise((r) => setTimeout(r, 10));
      }
    };

    it('the path vanishing takes an open bus down; its return reopens at once, not at the end of the backoff', async () => {
      const dir = await makeTempDir('gridedge-bus-watch-');
      const path = join(dir.path, 'ttyUSB0');
      await writeFile(path, '');
      const ports = createFakePortFactory(systemSerialClock);
      const events: string[] = [];
      const bus = createSerialBus({ id: 'rf-1', path, baudRate: 19_200, logger: silentLogger, openPort: ports.openPort, watchIntervalMs: 20, reopenInitialMs: 60_000 });
      bus.onUp(() => events.push('up'));
      bus.onDown((reason) => events.push(`down: ${reason}`));
      try {
        await bus.start();
        await new Promise((r) => setTimeout(r, 50));
        // The port itself says nothing (bindings-cpp#162): only the watch can notice.
        await rm(path);
        await waitFor(() => bus.state === 'reopening', 1_000);
        expect(events).toEqual(['up', `down: path ${path} vanished`]);
        ports.outcomes.push('ENOENT: no such file');
        await writeFile(path, '');
        // The backoff is 60 s here: only the watch can bring it back this soon.
        await waitFor(() => bus.state === 'open', 1_000);
        expect(events).toEqual(['up', `down: path ${path} vanished`, 'up']);
      } finally {
        await bus.stop();
        await dir.cleanup();
      }
    });

    it('a path that now names another device (re-plugged adapter) takes the bus down, and it reopens on the new one at once', async () => {
      const dir = await makeTempDir('gridedge-bus-watch-');
      const path = join(dir.path, 'ttyUSB0');
      await writeFile(path, 'old');
      const ports = createFakePortFactory(systemSerialClock);
      const downs: string[] = [];
      const bus = createSerialBus({ id: 'rf-1', path, baudRate: 19_200, logger: silentLogger, openPort: ports.openPort, watchIntervalMs: 20, reopenInitialMs: 60_000 });
      bus.onDown((reason) => downs.push(reason));
      try {
        await bus.start();
        await new Promise((r) => setTimeout(r, 50));
        await writeFile(join(dir.path, 'new'), 'new');
        await rename(join(dir.path, 'new'), path);
        await waitFor(() => downs.length > 0, 1_000);
        expect(downs).toEqual([`path ${path} now names another device`]);
        await waitFor(() => bus.state === 'open', 1_000);
        expect(ports.opens).toHaveLength(2);
      } finally {
        await bus.stop();
        await dir.cleanup();
      }
    });
  });
});
