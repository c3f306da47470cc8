import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Aedes } from 'aedes';
import { connect, type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MODELS } from '../../../devices/catalogue.js';
import type { CliIo } from '../../../gateway/cli/command.js';
import { createSimulateCommand } from '../../../gateway/cli/commands/simulate.js';
import { dispatch } from '../../../gateway/cli/main.js';
import { createRecordingSerialDriver } from '../../../simulators/scenario.js';

/* `gridedge simulate` in-process against a plain aedes broker: the three kinds of run end to end. */

const SITE = `id,model,grid,building,room,secret,bus,address,rf,heartbeat,resident_name,resident_phone
ELC-0701-B13,elec-ers1,110101013001002,7,B1-3,,rs485-1,1,,,,
SMK-0701-B13,smoke-json,110101013001002,7,B1-3,scrypt$16384$8$1$YWJj$ZGVm,,,,,,
CTW-0701-B13,smoke-ctw,110101013001002,7,B1-3,scrypt$16384$8$1$YWJj$ZGVm,,,,4h,,
RFP-0501-302,pager-rf,110101013001002,5,302,,rf-1,,5A3C1,,,
PGR-0501-302,pager-json,110101013001002,5,302,scrypt$16384$8$1$YWJj$ZGVm,,,,,,
`;

const SCENARIO = `name: short
steps:
  - { at: 0s, meter: { bus: rs485-1, address: 1 }, sample: { metrics: { t1_c: 26 } } }
  - { at: 0s, device: PGR-0501-302, send: { events: [heartbeat], metrics: { battery_pct: 80 } } }
  - { at: 200ms, meter: { bus: rs485-1, address: 1 }, sample: { metrics: { t1_c: 40 }, state: { short_circuit: true } } }
  - { at: 400ms, device: SMK-0701-B13, send: { events: [fire_alarm] }, note: smoke in B1-3 }
  - { at: 500ms, rf: { bus: rf-1, id: 5A3C1, key: sos } }
`;

let dir: string;
let aedes: Aedes;
let server: ReturnType<typeof createServer>;
let url: string;
const sockets = new Set<Socket>();
const passwords = new Map<string, string>();
let watcher: MqttClient;
const uplinks: { topic: string; payload: string }[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'gridedge-simulate-it-'));
  await writeFile(join(dir, 'devices.csv'), SITE);
  await writeFile(join(dir, 'short.yaml'), SCENARIO);
  aedes = await Aedes.createBroker({
    authenticate(client, _u, password, done) {
      passwords.set(client.id, password?.toString() ?? '');
      done(null, true);
    },
  });
  server = createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    aedes.handle(s);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `mqtt://127.0.0.1:${(server.address() as AddressInfo).port}`;
  watcher = connect(url, { clientId: 'watcher', protocolVersion: 4, reconnectPeriod: 0 });
  await new Promise<void>((resolve) => watcher.once('connect', () => resolve()));
  watcher.on('message', (topic, payload) => uplinks.push({ topic, payload: payload.toString() }));
  await watcher.subscribeAsync('dev/+/up', { qos: 1 });
});

afterAll(async () => {
  await watcher?.endAsync(true);
  for (const s of sockets) s.destroy();
  await new Promise<void>((resolve) => aedes.close(() => resolve()));
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await rm(dir, { recursive: true, force: true });
});

async function cli(argv: string[], deps: Parameters<typeof createSimulateCommand>[0] = {}) {
  let out = '';
  let err = '';
  const io: CliIo = { stdout: (t) => void (out += t), stderr: (t) => void (err += t), cwd: dir, models: () => Promise.resolve(MODELS) };
  const code = await dispatch(['simulate', '--url', url, ...argv], io, [createSimulateCommand({ isTTY: () => false, signal: new AbortController().signal, ...deps })]);
  return { code, out, err };
}

describe('gridedge simulate', () => {
  it('--scenario plays MQTT steps on the broker and serial steps on the driver, in time order', async () => {
    const serial = createRecordingSerialDriver();
    const before = uplinks.length;
    const started = Date.now();
    const r = await cli(['--site', '.', '--scenario', 'short.yaml'], { serial: () => serial });
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(Date.now() - started).toBeGreaterThanOrEqual(500);
    const mine = uplinks.slice(before);
    expect(mine.map((u) => u.topic)).toEqual(['dev/PGR-0501-302/up', 'dev/SMK-0701-B13/up']);
    expect(JSON.parse(mine[1]?.payload ?? '{}')).toMatchObject({ smoke: true });
    expect(passwords.get('SMK-0701-B13')).toBe('dhs-demo-SMK-0701-B13');
    expect(serial.calls.map((c) => c.kind)).toEqual(['meter', 'meter', 'rf']);
    expect(serial.calls[1]).toMatchObject({ sample: { metrics: { t1_c: 40 }, state: { short_circuit: true } } });
    const gap = (serial.calls[1]?.at ?? 0) - (serial.calls[0]?.at ?? 0);
    expect(gap).toBeGreaterThanOrEqual(190);
    expect(r.out).toMatch(/scenario short: 5 steps, 2 MQTT devices/);
    expect(r.out).toMatch(/\+0\.4s {2}SMK-0701-B13 fire_alarm — smoke in B1-3/);
    expect(r.out).toMatch(/summary\n {2}steps +5\n {2}failed +0/);
  });

  it('--scenario without a serial simulator lists the serial steps and plays the rest', async () => {
    const r = await cli(['--site', '.', '--scenario', 'short.yaml']);
    expect(r.code).toBe(0);
    expect(r.err).toMatch(/no serial simulator is attached \(--serial BUS=PATH\): the scenario's 3 meter\/rf steps are listed, not played/);
    expect(r.out).toMatch(/rf rf-1 5A3C1 sos \(not played\)/);
  });

  it('--rate runs a load and prints its summary', async () => {
    const r = await cli(['--site', '.', '--rate', '40', '--duration', '500ms']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/load: 40 msg\/s for 0.5 s over 3 devices, QoS 1/);
    expect(r.out).toMatch(/ {2}sent +20 /);
    expect(r.out).toMatch(/ {2}acked +20\n/);
    expect(r.out).toMatch(/PUBACK latency +p50 [\d.]+ ms, p99 [\d.]+ ms, max [\d.]+ ms/);
  });

  it('with neither, keeps devices online with heartbeats for --duration', async () => {
    const r = await cli(['--site', '.', '--devices', '2', '--heartbeat', '100ms', '--duration', '450ms']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/2 devices on mqtt:\/\/127\.0\.0\.1:\d+ for 0.45 s/);
    const sent = Number(/messages sent +(\d+)/.exec(r.out)?.[1]);
    expect(sent).toBeGreaterThanOrEqual(4);
  });

  it('-c reads the registry of a config, with the plain secrets it holds', async () => {
    await writeFile(
      join(dir, 'gridedge.yaml'),
      `gateway: { id: gw-test }
site:
  district: "110101"
  street: { code: "110101013", name: 东花市街道 }
  communities: [{ code: "001", name: 北里社区 }]
  grids: [{ code: "110101013001002", name: 第2网格 }]
devices: ./registry.csv
`,
    );
    await writeFile(join(dir, 'registry.csv'), 'id,model,grid,building,room,secret,bus,address,rf,heartbeat,resident_name,resident_phone\nSMK-PLAIN,smoke-json,110101013001002,7,B1-3,plain-secret-1,,,,,,\n');
    const r = await cli(['-c', 'gridedge.yaml', '--duration', '100ms']);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(passwords.get('SMK-PLAIN')).toBe('plain-secret-1');
  });

  it('exit 1 when nothing listens', async () => {
    const r = await cli(['--site', '.', '--url', 'mqtt://127.0.0.1:1', '--rate', '10', '--duration', '100ms']);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/no device could connect/);
  });
});

describe('gridedge simulate --serial', () => {
  it('plays meter and rf steps on simulated serial devices behind pty pairs', async () => {
    const { createPtyPair } = await import('../../helpers/pty.js');
    const { SerialPort } = await import('serialport');
    const { buildReadHoldingRequest } = await import('../../../devices/modbus/frames.js');
    const { model: ers1 } = await import('../../../devices/models/elec-ers1/index.js');
    const { model: pagerRf } = await import('../../../devices/models/pager-rf/index.js');
    const rs485 = await createPtyPair();
    const rf = await createPtyPair();
    const open = async (path: string) => {
      const port = new SerialPort({ path, baudRate: 9600, autoOpen: false });
      await new Promise<void>((resolve, reject) => port.open((e) => (e ? reject(e) : resolve())));
      return port;
    };
    // The gateway's ends.
    const master = await open(rs485.a);
    const bridge = await open(rf.a);
    const rfBytes: Buffer[] = [];
    bridge.on('data', (b: Buffer) => rfBytes.push(b));
    const masterBytes: Buffer[] = [];
    master.on('data', (b: Buffer) => masterBytes.push(b));
    try {
      await writeFile(
        join(dir, 'serial.yaml'),
        `steps:
  - { at: 0s, meter: { bus: rs485-1, address: 1 }, sample: { metrics: { t1_c: 40 }, state: { short_circuit: true } } }
  - { at: 100ms, rf: { bus: rf-1, id: 5A3C1, key: sos } }
  - { at: 1500ms, device: PGR-0501-302, send: { events: [heartbeat] } }
`,
      );
      const run = cli(['--site', '.', '--scenario', 'serial.yaml', '--serial', `rs485-1=${rs485.b}`, '--serial', `rf-1=${rf.b}`]);
      // Poll the meter as the gateway would, once the first step has played.
      await new Promise((r) => setTimeout(r, 700));
      master.write(buildReadHoldingRequest(1, ers1.poll.start, ers1.poll.count));
      const r = await run;
      expect(r.err).toBe('');
      expect(r.code).toBe(0);

      const answer = Buffer.concat(masterBytes);
      const reading = ers1.decode(answer, { deviceId: 'ELC-0701-B13', receivedAt: Date.now(), address: 1 });
      expect(reading.ok).toBe(true);
      if (reading.ok) {
        expect(reading.value.metrics.t1_c).toBe(40);
        expect(reading.value.state.short_circuit).toBe(true);
        // What the step did not name stays as the healthy meter had it.
        expect(reading.value.metrics.voltage_v).toBeGreaterThan(200);
      }
      const word = pagerRf.encodeFrame('5A3C1', 0x1);
      const heard = Buffer.concat(rfBytes);
      expect(heard.length).toBeGreaterThanOrEqual(2 * word.length);
      expect(heard.subarray(0, word.length)).toEqual(word);
      expect(heard.subarray(word.length, 2 * word.length)).toEqual(word);
    } finally {
      await new Promise<void>((resolve) => master.close(() => resolve()));
      await new Promise<void>((resolve) => bridge.close(() => resolve()));
      await rs485.dispose();
      await rf.dispose();
    }
  });

  it('refuses a bus the site does not have', async () => {
    const r = await cli(['--site', '.', '--scenario', 'short.yaml', '--serial', 'rs485-9=/dev/null']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/--serial rs485-9: the site has no devices on bus rs485-9/);
  });
});
