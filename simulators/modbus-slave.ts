/**
 * Simulated RS-485 meters behind one serial port: the slave side of SPEC §4.1, for tests, the
 * benchmark and the demo. It answers FC03 from each meter's registers, FC06 set-point writes with
 * the echo, exception 2 for registers it does not have, exception 1 for functions it does not
 * support, and stays silent for bad CRCs, other addresses and meters marked dead — like the real
 * line (Modbus over serial line v1.02 §2.4.1).
 *
 * A pseudo-terminal carries bytes instantly, so by default the simulator delays each answer by
 * the time the request and the response would take on the wire at `baudRate` (plus a turnaround),
 * which keeps the master's timing honest: a 29-register poll at 9600 8N1 takes ~75 ms, not ~0.
 */
import { SerialPort } from 'serialport';
import { hasValidCrc } from '../devices/modbus/crc.js';
import { FC_READ_HOLDING_REGISTERS, REQUEST_LENGTH, type ModbusRequest } from '../devices/modbus/frames.js';
import { buildExceptionResponse, buildReadResponse, buildWriteSingleResponse, parseRequest } from '../devices/modbus/slave.js';
import type { EncodeSample, ModbusModel } from '../devices/model.js';
import { model as ers1, ERS1_REGISTERS } from '../devices/models/elec-ers1/index.js';

/** One simulated meter at one slave address. */
export interface SimulatedSlave {
  /** The register block the meter serves, starting at `start` (for an ERS-1: the 29 polled registers). */
  registers(): readonly number[];
  /** First register of `registers()`; default 1 (SPEC §4.2). */
  readonly start?: number;
  /** Writable set-point registers (address → value): FC06 writes them, FC03 reads them. */
  readonly setpoints?: Map<number, number>;
}

export interface CorruptContext {
  readonly address: number;
  readonly request: ModbusRequest;
  /** The correct response about to be sent. */
  readonly response: Buffer;
}

export interface ModbusSlaveOptions {
  readonly path: string;
  readonly baudRate?: number;
  readonly slaves: ReadonlyMap<number, SimulatedSlave>;
  /** Return other bytes to send instead of `response` (a flipped CRC byte, a truncated frame), or undefined to send it as is. */
  readonly corrupt?: (ctx: CorruptContext) => Uint8Array | undefined;
  /** Addresses that do not answer; the simulator reads the set on every request, so a test may change it at run time. */
  readonly dead?: Set<number>;
  /** Delay answers by their wire time at `baudRate` (default true). */
  readonly wireTiming?: boolean;
  /** Bits per character on the simulated wire (8N1: 10). */
  readonly bitsPerChar?: number;
  /** The meter's think time before it answers (default 2 ms). */
  readonly turnaroundMs?: number;
}

export interface SlaveRequestLog {
  readonly address: number;
  readonly fc: number;
  /** Date.now() when the request was complete. */
  readonly at: number;
}

export interface ModbusSlaveCounters {
  readonly requests: number;
  readonly answered: number;
  readonly exceptions: number;
  /** Frames dropped in silence: bad CRC, short, another address, or a dead meter. */
  readonly silent: number;
  readonly corrupted: number;
}

export interface ModbusSlaveSimulator {
  /** Opens the port; rejects when it cannot. */
  start(): Promise<void>;
  /** Closes the port; pending answers are dropped. */
  stop(): Promise<void>;
  /** The set of dead addresses (the one passed in, or the simulator's own). */
  readonly dead: Set<number>;
  /** Requests heard for known addresses, oldest first (the last 10 000). */
  requests(address?: number): SlaveRequestLog[];
  counters(): ModbusSlaveCounters;
  /** Raw bytes onto the line (line noise, another master), after any pending answer. */
  inject(bytes: Uint8Array): Promise<void>;
}

const MAX_LOG = 10_000;

export function createModbusSlave(options: ModbusSlaveOptions): ModbusSlaveSimulator {
  const baudRate = options.baudRate ?? 9600;
  const bitsPerChar = options.bitsPerChar ?? 10;
  const wireTiming = options.wireTiming ?? true;
  const turnaroundMs = options.turnaroundMs ?? 2;
  const dead = options.dead ?? new Set<number>();
  const charMs = (bitsPerChar * 1000) / baudRate;
  // serial line §2.5.1.1: a frame ends after 3.5 characters of silence (1.75 ms fixed above 19200 baud).
  const silenceMs = baudRate > 19_200 ? 1.75 : 3.5 * charMs;

  let port: SerialPort | undefined;
  let buf: Buffer = Buffer.alloc(0);
  let silenceTimer: ReturnType<typeof setTimeout> | undefined;
  /** Answers go out one after the other, as from one transceiver. */
  let queue: Promise<void> = Promise.resolve();
  let epoch = 0;
  const log: SlaveRequestLog[] = [];
  let requests = 0;
  let answered = 0;
  let exceptions = 0;
  let silent = 0;
  let corrupted = 0;

  const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

  function send(bytes: Uint8Array, delayMs: number): void {
    const mine = epoch;
    queue = queue.then(async () => {
      if (delayMs > 0) await sleep(delayMs);
      const p = port;
      if (mine !== epoch || p === undefined || !p.isOpen) return;
      await new Promise<void>((resolve) => {
        p.write(Buffer.from(bytes), () => p.drain(() => resolve()));
      });
    });
  }

  function answer(request: Uint8Array, response: Buffer, ctx: Omit<CorruptContext, 'response'>): void {
    const replaced = options.corrupt?.({ ...ctx, response });
    const bytes = replaced ?? response;
    if (replaced !== undefined) corrupted++;
    const delay = wireTiming ? (request.length + bytes.length) * charMs + turnaroundMs : turnaroundMs;
    send(bytes, delay);
  }

  /** The meter's reply to a well-formed request: the registers, the echo, or exception 2. */
  function serve(slave: SimulatedSlave, req: ModbusRequest): { response: Buffer; exception: boolean } {
    const start = slave.start ?? 1;
    const illegalAddress = { response: buildExceptionResponse(req.slave, req.fc, 0x02), exception: true };
    if (req.fc === FC_READ_HOLDING_REGISTERS) {
      const block = slave.registers();
      if (req.start >= start && req.start + req.count <= start + block.length) {
        return { response: buildReadResponse(req.slave, block.slice(req.start - start, req.start - start + req.count)), exception: false };
      }
      const values: number[] = [];
      for (let a = req.start; a < req.start + req.count; a++) {
        const v = slave.setpoints?.get(a);
        if (v === undefined) return illegalAddress;
        values.push(v);
      }
      return { response: buildReadResponse(req.slave, values), exception: false };
    }
    if (slave.setpoints?.has(req.address) !== true) return illegalAddress;
    slave.setpoints.set(req.address, req.value);
    return { response: buildWriteSingleResponse(req.slave, req.address, req.value), exception: false };
  }

  function record(address: number, fc: number): void {
    log.push({ address, fc, at: Date.now() });
    if (log.length > MAX_LOG) log.splice(0, log.length - MAX_LOG);
  }

  function handleFrame(frame: Buffer): void {
    requests++;
    const parsed = parseRequest(frame);
    const address = frame[0] ?? 0;
    const slave = options.slaves.get(address);
    if (slave !== undefined) record(address, frame[1] ?? 0);
    if (slave === undefined || dead.has(address)) {
      silent++;
      return;
    }
    if (!parsed.ok) {
      const fc = frame[1] ?? 0;
      if (parsed.error.code === 'DEV_ERR_FUNCTION' && fc >= 1 && fc <= 0x7f) {
        exceptions++;
        send(buildExceptionResponse(address, fc, 0x01), wireTiming ? (frame.length + 5) * charMs + turnaroundMs : turnaroundMs);
      } else if (parsed.error.code === 'DEV_ERR_RANGE') {
        exceptions++;
        send(buildExceptionResponse(address, fc, 0x03), wireTiming ? (frame.length + 5) * charMs + turnaroundMs : turnaroundMs);
      } else {
        silent++; // serial line §2.4.1: a corrupt frame is discarded without a reply
      }
      return;
    }
    const { response, exception } = serve(slave, parsed.value);
    if (exception) exceptions++;
    else answered++;
    answer(frame, response, { address, request: parsed.value });
  }

  function onData(chunk: Buffer): void {
    buf = buf.length === 0 ? Buffer.from(chunk) : Buffer.concat([buf, chunk]);
    if (silenceTimer !== undefined) clearTimeout(silenceTimer);
    silenceTimer = undefined;
    // FC03 and FC06 requests are 8 bytes: take one as soon as it is whole and its CRC holds.
    while (buf.length >= REQUEST_LENGTH && hasValidCrc(buf.subarray(0, REQUEST_LENGTH))) {
      handleFrame(buf.subarray(0, REQUEST_LENGTH));
      buf = buf.subarray(REQUEST_LENGTH);
    }
    // Anything else is a frame of another length (another function) or garbage: it ends with silence.
    if (buf.length > 0) {
      silenceTimer = setTimeout(() => {
        silenceTimer = undefined;
        const frame = buf;
        buf = Buffer.alloc(0);
        handleFrame(frame);
      }, Math.max(2, silenceMs));
    }
  }

  return {
    dead,
    async start() {
      epoch++;
      const p = new SerialPort({ path: options.path, baudRate, autoOpen: false });
      p.on('data', onData);
      // The far end vanishing (a test killing socat) must not crash the simulator.
      p.on('error', () => undefined);
      await new Promise<void>((resolve, reject) => p.open((err) => (err ? reject(err) : resolve())));
      port = p;
    },
    async stop() {
      epoch++;
      if (silenceTimer !== undefined) clearTimeout(silenceTimer);
      silenceTimer = undefined;
      buf = Buffer.alloc(0);
      const p = port;
      port = undefined;
      if (p?.isOpen === true) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, 1_000);
          p.close(() => {
            clearTimeout(timer);
            resolve();
          });
        });
      }
    },
    requests(address) {
      return address === undefined ? [...log] : log.filter((r) => r.address === address);
    },
    counters() {
      return { requests, answered, exceptions, silent, corrupted };
    },
    inject(bytes) {
      send(bytes, 0);
      return queue;
    },
  };
}

// ---- meters whose values change ----------------------------------------------------------

/** A meter whose sample can be changed while it runs (what a scenario drives). */
export interface SimulatedMeter extends SimulatedSlave {
  readonly model: ModbusModel;
  readonly start: number;
  readonly setpoints: Map<number, number>;
  /** The sample the registers currently encode. */
  sample(): EncodeSample;
  set(sample: EncodeSample): void;
  update(change: (current: EncodeSample) => EncodeSample): void;
}

/** A healthy ERS-1 on a 220 V line: a refrigerator and a lamp in a basement room. */
export const ERS1_NORMAL_SAMPLE: EncodeSample = {
  metrics: {
    voltage_v: 221.4,
    current_a: 1.236,
    power_w: 262,
    power_factor: 0.958,
    frequency_hz: 50.01,
    energy_kwh: 1834.52,
    residual_ma: 8,
    t1_c: 31.5,
    t2_c: 29.8,
    arc_count: 0,
  },
  state: {},
};

/**
 * A meter serving `model`'s poll block from `sample` (default: a healthy ERS-1), with the ERS-1
 * leakage set-point (0x0100, 300 mA) writable.
 */
export function createSimulatedMeter(options: { model?: ModbusModel; sample?: EncodeSample; setpoints?: ReadonlyMap<number, number> } = {}): SimulatedMeter {
  const model = options.model ?? ers1;
  let current = options.sample ?? ERS1_NORMAL_SAMPLE;
  // Encoded when the sample changes, not per poll: a sample the map cannot hold throws here, in the scenario, not in a reply.
  let registers = model.encodeRegisters(current);
  const setpoints = new Map(options.setpoints ?? [[ERS1_REGISTERS.LEAKAGE_SETPOINT, 300]]);
  const meter: SimulatedMeter = {
    model,
    start: model.poll.start,
    setpoints,
    registers: () => registers,
    sample: () => current,
    set(sample) {
      registers = model.encodeRegisters(sample);
      current = sample;
    },
    update(change) {
      meter.set(change(current));
    },
  };
  return meter;
}

export interface ScenarioStep {
  /** Milliseconds after the scenario starts. */
  readonly atMs: number;
  readonly sample: EncodeSample | ((current: EncodeSample) => EncodeSample);
}

export interface RunningScenario {
  /** Resolves after the last step. */
  readonly done: Promise<void>;
  /** Cancels the steps not yet applied. */
  stop(): void;
}

/** Applies `steps` to `meter` at their times. */
export function playScenario(meter: SimulatedMeter, steps: readonly ScenarioStep[]): RunningScenario {
  const timers: ReturnType<typeof setTimeout>[] = [];
  let finish: () => void = () => undefined;
  const done = new Promise<void>((resolve) => {
    finish = resolve;
  });
  const ordered = [...steps].sort((x, y) => x.atMs - y.atMs);
  let left = ordered.length;
  if (left === 0) finish();
  for (const step of ordered) {
    timers.push(
      setTimeout(() => {
        if (typeof step.sample === 'function') meter.update(step.sample);
        else meter.set(step.sample);
        if (--left === 0) finish();
      }, step.atMs),
    );
  }
  return {
    done,
    stop() {
      for (const t of timers) clearTimeout(t);
      finish();
    },
  };
}

/**
 * SPEC §10: the refrigerator's socket short-circuits. At `atMs` the short-circuit bit is set and
 * the current spikes; then line temperature T1 climbs `riseC` °C over `overMs` (≥ 10 °C in 60 s is
 * what `fire.confirmed` and `electrical.overheat` look for).
 */
export function shortCircuitScenario(options: { atMs?: number; riseC?: number; overMs?: number; steps?: number } = {}): ScenarioStep[] {
  const atMs = options.atMs ?? 0;
  const riseC = options.riseC ?? 14;
  const overMs = options.overMs ?? 30_000;
  const n = Math.max(1, options.steps ?? 6);
  const steps: ScenarioStep[] = [
    {
      atMs,
      sample: (s) => ({
        ...s,
        metrics: { ...s.metrics, current_a: 38.5, power_w: 8200, arc_count: 12 },
        state: { ...s.state, short_circuit: true },
      }),
    },
  ];
  for (let i = 1; i <= n; i++) {
    steps.push({
      atMs: atMs + Math.round((overMs * i) / n),
      sample: (s) => ({ ...s, metrics: { ...s.metrics, t1_c: Math.round(((s.metrics?.['t1_c'] ?? 30) + riseC / n) * 10) / 10 } }),
    });
  }
  return steps;
}
