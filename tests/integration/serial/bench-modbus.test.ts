// Benchmark, not a contract: the polling cycle of 16 ERS-1 meters on one 9600-baud bus, against
// the frame-time arithmetic. The numbers are printed; only gross nonsense fails the test.
// GRIDEDGE_BENCH_SECONDS=20 runs it longer.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { model as ers1 } from '../../../devices/models/elec-ers1/index.js';
import { createSerialBus, systemSerialClock, type SerialBus } from '../../../gateway/serial/bus.js';
import { createModbusMaster, type ModbusMaster } from '../../../gateway/serial/modbus-master.js';
import { createModbusSlave, createSimulatedMeter, type ModbusSlaveSimulator, type SimulatedMeter } from '../../../simulators/modbus-slave.js';
import { createPtyPair, type PtyPair } from '../../helpers/pty.js';
import { intervals, logger, meter, sleep } from './harness.js';

const METERS = 16;
const BAUD = 9600;
const BITS_PER_CHAR = 10; // 8N1
const GAP_MS = 5;
const TURNAROUND_MS = 2; // the simulator's think time
const SECONDS = Number(process.env.GRIDEDGE_BENCH_SECONDS ?? 6);

const mean = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
const pct = (xs: readonly number[], p: number): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))] ?? Number.NaN;

describe(`bench: ${METERS} meters on one ${BAUD}-baud bus`, () => {
  let pair: PtyPair;
  let sim: ModbusSlaveSimulator;
  let bus: SerialBus;
  const masters: ModbusMaster[] = [];
  const meters = new Map<number, SimulatedMeter>(Array.from({ length: METERS }, (_, i) => [i + 1, createSimulatedMeter()]));
  const devices = Array.from({ length: METERS }, (_, i) => meter(`ELC-${String(i + 1).padStart(2, '0')}`, i + 1));

  beforeAll(async () => {
    pair = await createPtyPair();
    // The simulator holds each reply for its wire time at 9600 baud: a pty alone would carry it in microseconds.
    sim = createModbusSlave({ path: pair.b, baudRate: BAUD, slaves: meters, turnaroundMs: TURNAROUND_MS });
    await sim.start();
    bus = createSerialBus({ id: 'rs485-bench', path: pair.a, baudRate: BAUD, logger });
    await bus.start();
  });

  afterAll(async () => {
    for (const m of masters) await m.stop();
    await bus?.stop();
    await sim?.stop();
    await pair?.dispose();
  });

  async function run(pollIntervalMs: number): Promise<{ cycleMs: number; p95CycleMs: number; transactionMs: number; readings: number }> {
    let readings = 0;
    const master = createModbusMaster({
      bus,
      devices,
      modelFor: () => ers1,
      previousState: () => undefined,
      pollIntervalMs,
      gapMs: GAP_MS,
      clock: systemSerialClock,
      logger,
      onReading: () => {
        readings++;
      },
    });
    masters.push(master);
    const from = Date.now();
    master.start();
    await sleep(SECONDS * 1_000);
    await master.stop();
    const mine = (a: number): number[] => sim.requests(a).filter((r) => r.at >= from + 1_000).map((r) => r.at); // skip the first second
    const perMeter = Array.from({ length: METERS }, (_, i) => intervals(mine(i + 1))).flat();
    const all = sim
      .requests()
      .filter((r) => r.at >= from + 1_000)
      .map((r) => r.at);
    return { cycleMs: mean(perMeter), p95CycleMs: pct(perMeter, 0.95), transactionMs: mean(intervals(all)), readings };
  }

  it('prints the measured poll cycle next to the frame-time arithmetic', async () => {
    const charMs = (BITS_PER_CHAR * 1000) / BAUD;
    const requestMs = 8 * charMs; // 01 03 00 01 00 1D + CRC
    const responseMs = (5 + 2 * ers1.poll.count) * charMs; // 63 bytes
    const wireMs = requestMs + responseMs;
    const theoryTransactionMs = wireMs + GAP_MS + TURNAROUND_MS;
    const theoryCycleMs = METERS * theoryTransactionMs;

    const paced = await run(1_000);
    const flat = await run(10);
    const lines = [
      `modbus bench: ${METERS} × elec-ers1, ${BAUD} 8N1 (${BITS_PER_CHAR} bits/char), gap ${GAP_MS} ms, slave turnaround ${TURNAROUND_MS} ms, ${SECONDS} s per run`,
      `  theory: request ${requestMs.toFixed(2)} ms + response ${responseMs.toFixed(2)} ms = ${wireMs.toFixed(2)} ms on the wire; + gap + turnaround = ${theoryTransactionMs.toFixed(2)} ms a poll`,
      `  theory: one cycle of ${METERS} meters = ${theoryCycleMs.toFixed(0)} ms (wire alone ${(METERS * wireMs).toFixed(0)} ms) → a 1 s poll interval is not reachable on one bus`,
      `  measured, pollInterval 1 s : cycle ${paced.cycleMs.toFixed(0)} ms (p95 ${paced.p95CycleMs.toFixed(0)} ms), ${paced.transactionMs.toFixed(1)} ms a poll, ${paced.readings} readings`,
      `  measured, pollInterval 10 ms: cycle ${flat.cycleMs.toFixed(0)} ms (p95 ${flat.p95CycleMs.toFixed(0)} ms), ${flat.transactionMs.toFixed(1)} ms a poll, ${flat.readings} readings`,
    ];
    console.log(lines.join('\n'));
    // Only nonsense fails: faster than the wire allows, or far slower than it.
    for (const r of [paced, flat]) {
      expect(r.cycleMs).toBeGreaterThan(METERS * wireMs * 0.95);
      expect(r.cycleMs).toBeLessThan(theoryCycleMs * 2);
    }
  });
});
