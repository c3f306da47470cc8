// The meter simulator seen from a raw serial port, byte for byte (Modbus application protocol
// v1.1b3 §7 exceptions; serial line v1.02 §2.4.1 silence on a bad frame).
import { SerialPort } from 'serialport';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withCrc } from '../../../devices/modbus/crc.js';
import { buildReadHoldingRequest, buildWriteSingleRequest, parseReadResponse } from '../../../devices/modbus/frames.js';
import { buildExceptionResponse, buildWriteSingleResponse } from '../../../devices/modbus/slave.js';
import { model as ers1 } from '../../../devices/models/elec-ers1/index.js';
import { createModbusSlave, createSimulatedMeter, playScenario, shortCircuitScenario, type ModbusSlaveSimulator, type SimulatedMeter } from '../../../simulators/modbus-slave.js';
import { createPtyPair, type PtyPair } from '../../helpers/pty.js';
import { sleep } from './harness.js';

describe('modbus slave simulator', () => {
  let pair: PtyPair;
  let sim: ModbusSlaveSimulator;
  let port: SerialPort;
  const meter: SimulatedMeter = createSimulatedMeter();
  let received = Buffer.alloc(0);

  /** Sends `request` and returns what came back within `ms`. */
  async function ask(request: Uint8Array, ms = 250): Promise<Buffer> {
    received = Buffer.alloc(0);
    port.write(Buffer.from(request));
    await sleep(ms);
    return received;
  }

  beforeAll(async () => {
    pair = await createPtyPair();
    sim = createModbusSlave({ path: pair.b, slaves: new Map([[7, meter]]), dead: new Set([9]), wireTiming: false });
    await sim.start();
    port = new SerialPort({ path: pair.a, baudRate: 9600, autoOpen: false });
    port.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
    });
    await new Promise<void>((resolve, reject) => port.open((err) => (err ? reject(err) : resolve())));
  });

  afterAll(async () => {
    if (port?.isOpen) await new Promise<void>((resolve) => port.close(() => resolve()));
    await sim?.stop();
    await pair?.dispose();
  });

  it('answers the ERS-1 poll with the registers of its sample', async () => {
    const reply = await ask(buildReadHoldingRequest(7, 1, 29));
    const values = parseReadResponse(reply, { slave: 7, count: 29 });
    expect(values).toEqual({ ok: true, value: ers1.encodeRegisters(meter.sample()) });
  });

  it('exception 1 for an unknown function, 2 for registers it lacks, 3 for a count outside 1–125', async () => {
    expect(await ask(withCrc(Uint8Array.of(7, 0x04, 0, 1, 0, 2)))).toEqual(buildExceptionResponse(7, 0x04, 1));
    expect(await ask(buildReadHoldingRequest(7, 0x0200, 2))).toEqual(buildExceptionResponse(7, 0x03, 2));
    expect(await ask(withCrc(Uint8Array.of(7, 0x03, 0, 1, 0, 0)))).toEqual(buildExceptionResponse(7, 0x03, 3));
    expect(await ask(buildWriteSingleRequest(7, 0x0010, 1))).toEqual(buildExceptionResponse(7, 0x06, 2));
  });

  it('echoes a set-point write and serves the new value; silent for a bad CRC, another address or a dead meter', async () => {
    expect(await ask(buildWriteSingleRequest(7, 0x0100, 120))).toEqual(buildWriteSingleResponse(7, 0x0100, 120));
    expect(parseReadResponse(await ask(buildReadHoldingRequest(7, 0x0100, 1)), { slave: 7, count: 1 })).toEqual({ ok: true, value: [120] });
    const bad = buildReadHoldingRequest(7, 1, 29);
    bad[7] = (bad[7] ?? 0) ^ 0xff;
    expect(await ask(bad)).toHaveLength(0);
    expect(await ask(buildReadHoldingRequest(8, 1, 29))).toHaveLength(0);
    expect(await ask(buildReadHoldingRequest(9, 1, 29))).toHaveLength(0);
    expect(sim.counters().silent).toBeGreaterThanOrEqual(2);
  });

  it('follows a scenario: short circuit, then a line-temperature rise', async () => {
    const running = playScenario(meter, shortCircuitScenario({ atMs: 0, riseC: 12, overMs: 200, steps: 4 }));
    await running.done;
    const decoded = ers1.decode(await ask(buildReadHoldingRequest(7, 1, 29)), { deviceId: 'ELC-7', receivedAt: 0, address: 7 });
    expect(decoded.ok && decoded.value.state['short_circuit']).toBe(true);
    expect(decoded.ok && decoded.value.events).toEqual(['short_circuit']);
    expect(decoded.ok ? decoded.value.metrics['t1_c'] : undefined).toBeCloseTo(31.5 + 12, 1);
  });
});
