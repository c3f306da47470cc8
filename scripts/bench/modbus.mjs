#!/usr/bin/env node
// Modbus poll-cycle benchmark (not a test; issue 7 item 3): N elec-ers1 meters on one RS-485 bus
// (a socat pty pair; the simulator from dist/simulators/modbus-slave.js holds every reply for its
// wire time at the bus's baud rate, as tests/integration/serial/bench-modbus.test.ts does), polled
// flat out (pollInterval 10 ms) by the gateway's Modbus master, for 1, 8, 16, 32 meters at 9600
// and 19200 baud, against the frame-time arithmetic.
//
//   node scripts/bench/modbus.mjs [--seconds 4]
//
// Results go to scripts/bench/results/modbus.json.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import process from 'node:process';
import { ROOT, flag, killChildren, saveResult, sleep, start } from './lib.mjs';

const SECONDS = flag('seconds', 4);
const METER_COUNTS = [1, 8, 16, 32];
const BAUDS = [9600, 19200];
const BITS_PER_CHAR = 10; // 8N1
const GAP_MS = 5;
const TURNAROUND_MS = 2;
const SKIP_MS = 1_000;

if (!existsSync(join(ROOT, 'dist/gateway/serial/modbus-master.js'))) throw new Error('run `npm run build` first');
const { model: ers1 } = await import(join(ROOT, 'dist/devices/models/elec-ers1/index.js'));
const { createSerialBus, systemSerialClock } = await import(join(ROOT, 'dist/gateway/serial/bus.js'));
const { createModbusMaster } = await import(join(ROOT, 'dist/gateway/serial/modbus-master.js'));
const { createModbusSlave, createSimulatedMeter } = await import(join(ROOT, 'dist/simulators/modbus-slave.js'));
const { pino } = await import('pino');
const logger = pino({ level: 'silent' });

const mean = (xs) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
const pct = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))] ?? Number.NaN;
const intervals = (ts) => ts.slice(1).map((t, i) => t - ts[i]);

async function ptyPair(dir) {
  const a = join(dir, 'a');
  const b = join(dir, 'b');
  const proc = start('socat', ['-d', '-d', `pty,raw,echo=0,link=${a}`, `pty,raw,echo=0,link=${b}`], { ready: /starting data transfer loop/, timeoutMs: 5_000 });
  await proc.line;
  for (let i = 0; i < 50 && !(existsSync(a) && existsSync(b)); i++) await sleep(20);
  return { a, b, proc };
}

async function one(meters, baud) {
  const dir = mkdtempSync(join(tmpdir(), 'gridedge-bench-modbus-'));
  const pair = await ptyPair(dir);
  const slaves = new Map(Array.from({ length: meters }, (_, i) => [i + 1, createSimulatedMeter()]));
  const sim = createModbusSlave({ path: pair.b, baudRate: baud, slaves, turnaroundMs: TURNAROUND_MS, wireTiming: true, bitsPerChar: BITS_PER_CHAR });
  await sim.start();
  const bus = createSerialBus({ id: 'rs485-bench', path: pair.a, baudRate: baud, logger });
  await bus.start();
  const devices = Array.from({ length: meters }, (_, i) => ({
    id: `ELC-${String(i + 1).padStart(2, '0')}`,
    model: 'elec-ers1',
    place: { grid: '110101013001002', building: '7', room: `B1-${i + 1}` },
    bus: 'rs485-bench',
    address: i + 1,
  }));
  let readings = 0;
  const master = createModbusMaster({
    bus,
    devices,
    modelFor: () => ers1,
    previousState: () => undefined,
    pollIntervalMs: 10,
    gapMs: GAP_MS,
    clock: systemSerialClock,
    logger,
    onReading: () => {
      readings++;
    },
  });
  const from = Date.now();
  master.start();
  await sleep(SECONDS * 1000);
  await master.stop();
  const perMeter = Array.from({ length: meters }, (_, i) => intervals(sim.requests(i + 1).filter((r) => r.at >= from + SKIP_MS).map((r) => r.at))).flat();
  const all = sim.requests().filter((r) => r.at >= from + SKIP_MS).map((r) => r.at);
  await bus.stop();
  await sim.stop();
  await pair.proc.stop();
  rmSync(dir, { recursive: true, force: true });

  const charMs = (BITS_PER_CHAR * 1000) / baud;
  const requestMs = 8 * charMs; // 01 03 00 01 00 1D + CRC
  const responseMs = (5 + 2 * ers1.poll.count) * charMs;
  const wireMs = requestMs + responseMs;
  const theoryTransactionMs = wireMs + GAP_MS + TURNAROUND_MS;
  const transactionMs = mean(intervals(all));
  // One meter: the per-meter interval is the transaction itself.
  const cycleMs = meters === 1 ? transactionMs : mean(perMeter);
  const fig = {
    meters,
    baud,
    wireMs,
    theoryTransactionMs,
    theoryCycleMs: meters * theoryTransactionMs,
    wireCycleMs: meters * wireMs,
    cycleMs,
    p95CycleMs: meters === 1 ? pct(intervals(all), 0.95) : pct(perMeter, 0.95),
    transactionMs,
    readings,
    readingsPerSecond: readings / SECONDS,
  };
  console.log(
    `  ${String(meters).padStart(2)} meters @ ${baud}: cycle ${cycleMs.toFixed(1)} ms (p95 ${fig.p95CycleMs.toFixed(1)}), ${transactionMs.toFixed(2)} ms a poll; ` +
      `theory ${fig.theoryCycleMs.toFixed(1)} ms (${theoryTransactionMs.toFixed(2)} a poll; wire alone ${fig.wireCycleMs.toFixed(1)}) → ${((fig.theoryCycleMs / cycleMs) * 100).toFixed(0)} % of the limit`,
  );
  return fig;
}

const runs = [];
try {
  console.log(`modbus: elec-ers1, 8N1, gap ${GAP_MS} ms, slave turnaround ${TURNAROUND_MS} ms, poll interval 10 ms (flat out), ${SECONDS} s a run, first ${SKIP_MS / 1000} s skipped`);
  for (const baud of BAUDS) for (const m of METER_COUNTS) runs.push(await one(m, baud));
  saveResult('modbus', { options: { SECONDS, GAP_MS, TURNAROUND_MS, BITS_PER_CHAR }, runs });
  console.log('saved scripts/bench/results/modbus.json');
} finally {
  killChildren();
}
process.exit(0);
