import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Reading } from '../../../devices/reading.js';
import { createModbusSlave, createSimulatedMeter, ERS1_NORMAL_SAMPLE, type ModbusSlaveSimulator } from '../../../simulators/modbus-slave.js';
import { createRfEmitter, type RfEmitter } from '../../../simulators/rf-emitter.js';
import { metricsText, metricValue, writeFaultSite } from '../../helpers/faults.js';
import { GRID, sleep, startGatewayInProcess, waitUntil, type InProcessGateway } from '../../helpers/gateway.js';
import { createPtyPair, type PtyPair } from '../../helpers/pty.js';

// Issue 8, item 1: a USB serial adapter vanishing mid-frame, under the whole gateway (in-process:
// real buses, Modbus master, RF reader, pipeline, store, rules). Each adapter is a socat pty pair
// (tests/helpers/pty.ts) that is SIGKILLed right after the far end wrote half a frame, then
// recreated on the same path a few seconds later. A third adapter vanishes and never comes back.
// What the design says (SPEC §4, gateway/serial/bus.ts, modbus-master.ts, rf-reader.ts): the bus
// goes `reopening` and comes back by itself (1 s doubling to 30 s, plus a watch on the path);
// every meter on a lost Modbus bus gets one comm_fault (an incident) and comm_restored when it
// answers again; every pager on a lost RF bus gets one comm_fault too (nobody can hear its SOS:
// the rules raise device.rf_unheard after 30 s) and comm_restored when the bus is back; a frame
// cut by the outage is never glued to bytes of the new port.

const SERVICE = 0x2;
const FAMILY = 0x4;
const SOS = 0x1;
/** What the cut Modbus reply carried: no stored reading may ever show it. */
const HALF_FRAME_VOLTAGE = 123.4;
const UNPLUGGED_MS = 3_000;

let modbusPair: PtyPair;
let rfPair: PtyPair;
let lostPair: PtyPair;
let sim: ModbusSlaveSimulator;
let lostSim: ModbusSlaveSimulator;
let emitter: RfEmitter;
let gw: InProcessGateway;

const meters = new Map([
  [1, createSimulatedMeter()],
  [2, createSimulatedMeter()],
]);
const lostMeters = new Map([[9, createSimulatedMeter()]]);
/** Armed by a test: the next reply to meter 1 is cut in half and the adapter killed while the master waits for the rest. */
let cutNext: (() => void) | undefined;

async function startSim(): Promise<void> {
  sim = createModbusSlave({
    path: modbusPair.b,
    slaves: meters,
    corrupt({ address, response }) {
      if (address !== 1 || cutNext === undefined) return undefined;
      const cut = cutNext;
      cutNext = undefined;
      meters.get(1)?.set(ERS1_NORMAL_SAMPLE);
      // The half goes out after the wire time (~35 ms); the master then waits 300 ms for the rest.
      setTimeout(cut, 150);
      return response.subarray(0, Math.floor(response.length / 2));
    },
  });
  await sim.start();
}

beforeAll(async () => {
  [modbusPair, rfPair, lostPair] = await Promise.all([createPtyPair(), createPtyPair(), createPtyPair()]);
  await startSim();
  lostSim = createModbusSlave({ path: lostPair.b, slaves: lostMeters });
  await lostSim.start();
  emitter = createRfEmitter({ path: rfPair.b });
  await emitter.start();
  const place = { grid: GRID, building: '7' };
  const site = await writeFaultSite({
    devices: [],
    config: {
      serial: [
        { id: 'rs485-1', path: modbusPair.a, protocol: 'modbus-rtu', pollInterval: '500ms' },
        { id: 'rf-1', path: rfPair.a, protocol: 'rf-bridge' },
        { id: 'rs485-9', path: lostPair.a, protocol: 'modbus-rtu', pollInterval: '500ms' },
      ],
    },
    serialDevices: [
      { id: 'ELC-01', model: 'elec-ers1', ...place, room: 'B1-1', bus: 'rs485-1', address: '1' },
      { id: 'ELC-02', model: 'elec-ers1', ...place, room: 'B1-2', bus: 'rs485-1', address: '2' },
      { id: 'ELC-09', model: 'elec-ers1', ...place, room: 'B1-9', bus: 'rs485-9', address: '9' },
      { id: 'PGR-RF', model: 'pager-rf', ...place, room: '302', bus: 'rf-1', rf: '5A3C1' },
    ],
  });
  gw = await startGatewayInProcess(site);
  await waitUntil('every bus open and every meter read', () => bus('rs485-1').state === 'open' && bus('rf-1').state === 'open' && bus('rs485-9').state === 'open' && ['ELC-01', 'ELC-02', 'ELC-09'].every((id) => readings(id).length > 0), 20_000);
}, 90_000);

afterAll(async () => {
  await gw?.stop();
  await emitter?.stop();
  await sim?.stop();
  await lostSim?.stop();
});

function bus(id: string) {
  const b = gw.gateway.health().buses.find((x) => x.bus.id === id);
  if (!b) throw new Error(`no bus ${id} in health`);
  return b.bus;
}
const readings = (deviceId: string): Reading[] => gw.gateway.store.queryReadings({ deviceId, limit: 10_000 }).map((s) => s.reading);
const withEvent = (deviceId: string, event: string): Reading[] => readings(deviceId).filter((r) => r.events.includes(event));
const busLogLines = (id: string): Record<string, unknown>[] =>
  gw
    .logs()
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l.bus === id);

describe('a serial adapter vanishing mid-frame (issue 8)', () => {
  it('Modbus: cut mid-reply, comm_fault for every meter and the bus down in health; back on the same path, polling resumes, nothing decoded from the half', async () => {
    const faultsBefore = ['ELC-01', 'ELC-02'].map((id) => withEvent(id, 'comm_fault').length);
    const opens = bus('rs485-1').opens;
    let killedAt = 0;
    const killed = new Promise<void>((resolve) => {
      cutNext = () => {
        killedAt = Date.now();
        void modbusPair.kill().then(resolve);
      };
    });
    meters.get(1)?.set({ ...ERS1_NORMAL_SAMPLE, metrics: { ...ERS1_NORMAL_SAMPLE.metrics, voltage_v: HALF_FRAME_VOLTAGE } });
    await killed;

    await waitUntil('the bus down in health', () => bus('rs485-1').state === 'reopening', 10_000, 20);
    await waitUntil('comm_fault for both meters', () => ['ELC-01', 'ELC-02'].every((id, i) => withEvent(id, 'comm_fault').length > (faultsBefore[i] ?? 0)), 10_000);
    const down = gw.gateway.health();
    const metricsDown = await metricsText(gw.gateway.httpPort());
    await waitUntil('comm_fault incidents', () => ['ELC-01', 'ELC-02'].every((id) => gw.gateway.safety.manager.list({ status: ['open'] }).some((i) => i.type === 'device.comm_fault' && i.deviceIds.includes(id))), 10_000);

    await sleep(Math.max(0, UNPLUGGED_MS - (Date.now() - killedAt)));
    // Unplugged for a while: still exactly one comm_fault each.
    expect(['ELC-01', 'ELC-02'].map((id) => withEvent(id, 'comm_fault').length - (faultsBefore[['ELC-01', 'ELC-02'].indexOf(id)] ?? 0))).toEqual([1, 1]);
    // The simulator really wrote the half reply before the adapter went.
    expect(sim.counters().corrupted).toBe(1);
    await sim.stop();
    await modbusPair.restart();
    const backAt = Date.now();
    await startSim();
    await waitUntil('the bus open again', () => bus('rs485-1').state === 'open', 20_000, 20);
    const openMs = Date.now() - backAt;
    await waitUntil('comm_restored for both meters', () => ['ELC-01', 'ELC-02'].every((id) => withEvent(id, 'comm_restored').length > 0), 20_000, 20);
    const restoredMs = Date.now() - backAt;
    const n = readings('ELC-01').length;
    await waitUntil('polling resumed', () => readings('ELC-01').length >= n + 2, 10_000);
    const metricsUp = await metricsText(gw.gateway.httpPort());
    console.log(`FIGURE serial-vanish modbus: unplugged ${backAt - killedAt} ms; bus open ${openMs} ms and both meters comm_restored ${restoredMs} ms after the adapter returned`);

    expect(down.ok).toBe(false);
    expect(down.buses.find((b) => b.bus.id === 'rs485-1')?.bus.lastError).toBeDefined();
    expect(metricValue(metricsDown, 'gridedge_serial_bus_up', { bus: 'rs485-1' })).toBe(0);
    expect(metricValue(metricsUp, 'gridedge_serial_bus_up', { bus: 'rs485-1' })).toBe(1);
    expect(bus('rs485-1').opens).toBeGreaterThanOrEqual(opens + 1);
    // Nothing was decoded from the cut reply, neither alone nor glued to the next port's bytes.
    expect(readings('ELC-01').filter((r) => r.metrics.voltage_v === HALF_FRAME_VOLTAGE)).toEqual([]);
    expect(readings('ELC-01').at(-1)?.metrics.voltage_v).toBe(ERS1_NORMAL_SAMPLE.metrics?.voltage_v);
    // comm_restored clears the incidents' condition.
    await waitUntil('the comm_fault condition cleared', () => gw.gateway.safety.manager.list({ limit: 100 }).filter((i) => i.type === 'device.comm_fault' && i.scopeKey !== 'ELC-09').every((i) => i.clearedAt !== null), 10_000);
  }, 90_000);

  it('RF: cut mid-frame; back on the same path, the rest of the old frame is not glued to it and the next SOS press arrives', async () => {
    const opens = bus('rf-1').opens;
    const frame = emitter.frame('5A3C1', FAMILY);
    await emitter.write(frame.subarray(0, 6));
    // Let socat hand the half to the gateway's side, then pull the adapter.
    await sleep(150);
    const killedAt = Date.now();
    await rfPair.kill();
    // A listen-only bus notices through its path watch (or serialport's close), within a second or two.
    await waitUntil('the rf bus down in health', () => bus('rf-1').state === 'reopening', 10_000, 20);
    const seenDownMs = Date.now() - killedAt;
    expect(gw.gateway.health().ok).toBe(false);
    await waitUntil('the pager marked unheard', () => withEvent('PGR-RF', 'comm_fault').length === 1, 10_000, 20);
    expect(withEvent('PGR-RF', 'comm_fault')[0]).toMatchObject({ kind: 'pager', state: { comm_fault: true } });
    await emitter.stop();
    await sleep(Math.max(0, UNPLUGGED_MS - (Date.now() - killedAt)));
    await rfPair.restart();
    const backAt = Date.now();
    emitter = createRfEmitter({ path: rfPair.b });
    await emitter.start();
    await waitUntil('the rf bus open again', () => bus('rf-1').state === 'open', 20_000, 20);
    const openMs = Date.now() - backAt;
    await waitUntil('the pager heard again', () => withEvent('PGR-RF', 'comm_restored').length === 1, 10_000, 20);
    const n = readings('PGR-RF').length;
    // The tail of the cut frame first: joined to its head it would be a family call.
    await emitter.write(frame.subarray(6));
    await sleep(100);
    await emitter.press('5A3C1', SOS, { repeats: 3, gapMs: 60 });
    await waitUntil('the SOS after the reopen', () => readings('PGR-RF').length > n, 10_000, 20);
    const sosMs = Date.now() - backAt;
    await waitUntil('the SOS incident', () => gw.gateway.safety.manager.list({ status: ['open'] }).some((i) => i.type === 'sos' && i.deviceIds.includes('PGR-RF')), 10_000);
    await emitter.press('5A3C1', SERVICE);
    await waitUntil('the press after it', () => readings('PGR-RF').length > n + 1, 10_000, 20);
    console.log(`FIGURE serial-vanish rf: down seen ${seenDownMs} ms after the pull; bus open ${openMs} ms and the next SOS stored ${sosMs} ms after the adapter returned`);

    expect(bus('rf-1').opens).toBeGreaterThanOrEqual(opens + 1);
    expect(readings('PGR-RF').slice(n).map((r) => r.events)).toEqual([['sos'], ['service_call']]);
    expect(withEvent('PGR-RF', 'family_call')).toEqual([]);
    // One outage, one comm_fault and one comm_restored; the reopen was shorter than the rule's 30 s.
    expect([withEvent('PGR-RF', 'comm_fault').length, withEvent('PGR-RF', 'comm_restored').length]).toEqual([1, 1]);
    expect(gw.gateway.safety.manager.list({}).filter((i) => i.ruleId === 'device.rf_unheard')).toEqual([]);
  }, 60_000);

  it('an adapter that never comes back: bounded retries, no log flood, the other buses unaffected', async () => {
    // Pulled now and left out for the rest of the file.
    const linesBefore = busLogLines('rs485-9').length;
    const pulledAt = Date.now();
    await lostSim.stop();
    await lostPair.kill();
    await waitUntil('rs485-9 down', () => bus('rs485-9').state === 'reopening', 10_000, 20);
    await waitUntil('comm_fault for its meter', () => withEvent('ELC-09', 'comm_fault').length === 1, 10_000);
    const OBSERVE_MS = 16_000;
    const others = readings('ELC-02').length;
    await sleep(OBSERVE_MS);
    const elapsed = Date.now() - pulledAt;
    const lines = busLogLines('rs485-9').slice(linesBefore);
    const attempts = lines.filter((l) => l.msg === 'cannot open serial port').length;
    // The bus's backoff: 1 s doubling to 30 s (no jitter), so in `elapsed` at most this many attempts.
    let bound = 0;
    for (let spent = 0; spent + Math.min(30_000, 1_000 * 2 ** bound) <= elapsed; bound++) spent += Math.min(30_000, 1_000 * 2 ** bound);
    const h = bus('rs485-9');
    console.log(
      `FIGURE serial-vanish lost adapter: ${elapsed} ms gone, ${attempts} open attempts (backoff bound ${bound}), ${lines.length} log lines for the bus, ` +
        `next attempt in ${(h.nextAttemptAt ?? 0) - Date.now()} ms; ELC-09 comm_fault readings ${withEvent('ELC-09', 'comm_fault').length}`,
    );

    expect(h.state).toBe('reopening');
    expect(h.lastError).toMatch(/^open failed/);
    expect(attempts).toBeGreaterThanOrEqual(2);
    expect(attempts).toBeLessThanOrEqual(bound + 1);
    // Per attempt a warning and a backoff line, plus the loss and the meter's fault: no flood.
    expect(lines.length).toBeLessThanOrEqual(2 * (bound + 1) + 6);
    // One comm_fault, not one per failed attempt.
    expect(withEvent('ELC-09', 'comm_fault')).toHaveLength(1);
    // The other buses kept working meanwhile, and the gateway is alive.
    expect(bus('rs485-1').state).toBe('open');
    expect(readings('ELC-02').length).toBeGreaterThan(others + OBSERVE_MS / 1_000);
    expect(gw.logs().filter((l) => /"level":60/.test(l))).toEqual([]);
  }, 60_000);
});
