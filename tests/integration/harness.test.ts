// Proves that each integration-test helper really starts (and stops) what it says: a test harness
// that silently runs against nothing is worse than none (STYLE.md "Tests").
import { createServer } from 'node:net';
import { existsSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { InfluxDB } from 'influx';
import mqtt from 'mqtt';
import { SerialPort } from 'serialport';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanupAll, registerCleanup } from '../helpers/cleanup.js';
import { startInfluxd, type Influxd } from '../helpers/influxd.js';
import { startMosquitto, type Mosquitto } from '../helpers/mosquitto.js';
import { freePort, waitForPort } from '../helpers/ports.js';
import { spawnProcess } from '../helpers/process.js';
import { createPtyPair, type PtyPair } from '../helpers/pty.js';
import { makeTempDir } from '../helpers/tmp.js';

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Rejects after `ms`, so that a test waiting on an event fails with a message instead of hanging. */
function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms);
    }),
  ]);
}

describe('ports', () => {
  it('freePort returns a port that can be bound, and waitForPort sees a listener', async () => {
    const port = await freePort();
    expect(port).toBeGreaterThan(0);
    const server = createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    try {
      await waitForPort(port, '127.0.0.1', 2_000);
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it('waitForPort gives up after its timeout when nothing listens', async () => {
    const port = await freePort();
    const started = Date.now();
    await expect(waitForPort(port, '127.0.0.1', 300)).rejects.toThrow(/nothing listens/);
    expect(Date.now() - started).toBeLessThan(2_000);
  });
});

describe('process and cleanup', () => {
  it('captures output, waits for a line and reports an early exit with the output', async () => {
    const echo = await spawnProcess('node', ['-e', 'console.log("ready on 42"); console.error("oops"); process.exit(3)']);
    await expect(echo.waitForLine(/ready on \d+/)).resolves.toBe('ready on 42');
    await expect(echo.waitForExit()).resolves.toEqual({ code: 3, signal: null });
    expect(echo.output()).toContain('oops');
    await expect(echo.waitForLine('never printed')).rejects.toThrow(/exited \(code 3\)[\s\S]*oops/);
  });

  it('stop() escalates to SIGKILL when the child ignores SIGTERM', async () => {
    const stubborn = await spawnProcess('node', ['-e', 'process.on("SIGTERM", () => console.log("ignored")); console.log("up"); setInterval(() => {}, 1000)']);
    await stubborn.waitForLine('up');
    const status = await stubborn.stop(300);
    expect(status.signal).toBe('SIGKILL');
    expect(stubborn.output()).toContain('ignored');
    expect(isAlive(stubborn.pid)).toBe(false);
  });

  it('cleanupAll() stops what a test forgot, and removes its temp dir', async () => {
    const dir = await makeTempDir('gridedge-harness-');
    const sleeper = await spawnProcess('sleep', ['60']);
    const order: string[] = [];
    registerCleanup('marker', () => {
      order.push('marker');
      return Promise.resolve();
    });
    expect(isAlive(sleeper.pid)).toBe(true);
    await cleanupAll();
    expect(order).toEqual(['marker']);
    expect(sleeper.exited()).toBe(true);
    expect(isAlive(sleeper.pid)).toBe(false);
    expect(existsSync(dir.path)).toBe(false);
  });
});

describe('mosquitto', () => {
  let broker: Mosquitto;
  beforeAll(async () => {
    broker = await startMosquitto();
  });
  afterAll(async () => {
    await broker.dispose();
  });

  const connect = (url: string, opts: mqtt.IClientOptions = {}): Promise<mqtt.MqttClient> =>
    mqtt.connectAsync(url, { reconnectPeriod: 0, connectTimeout: 3_000, ...opts });

  async function roundTrip(topic: string, payload: string): Promise<string> {
    const sub = await connect(broker.url);
    const pub = await connect(broker.url);
    try {
      const received = new Promise<string>((resolve) => sub.on('message', (t, p) => t === topic && resolve(p.toString())));
      await sub.subscribeAsync(topic, { qos: 1 });
      await pub.publishAsync(topic, payload, { qos: 1 });
      return await within(3_000, `message on ${topic}`, received);
    } finally {
      await Promise.all([sub.endAsync(), pub.endAsync()]);
    }
  }

  it('carries a QoS 1 publish from one client to another', async () => {
    expect(broker.port).toBeGreaterThan(0);
    await expect(roundTrip('city/110101013/test', '{"hello":"网格"}')).resolves.toBe('{"hello":"网格"}');
  });

  it('stops (connections refused) and restarts on the same port with its persisted retained messages', async () => {
    const pub = await connect(broker.url);
    await pub.publishAsync('city/110101013/gateways/gw-test/status', 'online', { qos: 1, retain: true });
    await pub.endAsync();
    const firstPid = broker.pid();

    await broker.stop();
    expect(isAlive(firstPid)).toBe(false);
    await expect(connect(broker.url)).rejects.toThrow();

    await broker.restart();
    expect(broker.pid()).not.toBe(firstPid);
    const sub = await connect(broker.url);
    try {
      const retained = new Promise<string>((resolve) => sub.on('message', (_t, p) => resolve(p.toString())));
      await sub.subscribeAsync('city/110101013/gateways/gw-test/status', { qos: 1 });
      await expect(within(3_000, 'retained status after restart', retained)).resolves.toBe('online');
    } finally {
      await sub.endAsync();
    }
    await expect(roundTrip('after/restart', 'x')).resolves.toBe('x');
  });

  it('enforces a password file when anonymous access is off', async () => {
    const secured = await startMosquitto({ allowAnonymous: false, users: { 'gw-dhs-07': 'uplink-secret' } });
    try {
      // Mosquitto answers a bad password with CONNACK 5 (not authorised).
      await expect(connect(secured.url, { username: 'gw-dhs-07', password: 'wrong' })).rejects.toThrow(/Not authorized|code 5/i);
      await expect(connect(secured.url)).rejects.toThrow();
      const ok = await connect(secured.url, { username: 'gw-dhs-07', password: 'uplink-secret' });
      expect(ok.connected).toBe(true);
      await ok.endAsync();
    } finally {
      await secured.dispose();
    }
    expect(existsSync(secured.dir)).toBe(false);
  });
});

describe('influxd', () => {
  let server: Influxd;
  beforeAll(async () => {
    server = await startInfluxd();
  });
  afterAll(async () => {
    await server.dispose();
  });

  it('accepts a write and answers a query through the influx client, before and after a restart', async () => {
    expect(server.rpcPort).not.toBe(server.port);
    const client = new InfluxDB({ host: '127.0.0.1', port: server.port, database: 'harness' });
    await client.createDatabase('harness');
    expect(await client.getDatabaseNames()).toContain('harness');

    const ts = Date.UTC(2024, 11, 4, 8, 0, 0);
    await client.writePoints(
      [{ measurement: 'smoke', tags: { device_id: 'SMK-0701-B13', grid: '110101013001002', room: 'B1-3' }, fields: { battery_pct: 85, smoke: true }, timestamp: ts }],
      { precision: 'ms' },
    );
    // Spread: the client returns an array decorated with extra properties.
    const read = async (): Promise<unknown[]> => [
      ...(await client.query<{ battery_pct: number; smoke: boolean; device_id: string }>(`SELECT battery_pct, smoke, device_id FROM smoke WHERE grid = '110101013001002'`, {
        precision: 'ms',
      })),
    ];
    expect(await read()).toMatchObject([{ battery_pct: 85, smoke: true, device_id: 'SMK-0701-B13' }]);

    // The helper's own raw query sees the same point.
    const [result] = await server.query('SELECT count(battery_pct) FROM smoke', 'harness');
    expect(result?.series?.[0]?.values[0]?.[1]).toBe(1);

    await server.restart();
    expect(await read()).toMatchObject([{ battery_pct: 85, device_id: 'SMK-0701-B13' }]);
  });

  it('stop() really stops it: the client then fails', async () => {
    const other = await startInfluxd();
    const pid = other.pid();
    await other.write('missing_db_is_an_error', 'x v=1').then(
      () => expect.unreachable('write to a missing database must fail'),
      (err: Error) => expect(err.message).toMatch(/HTTP 404/),
    );
    await other.stop();
    expect(isAlive(pid)).toBe(false);
    await expect(fetch(`${other.url}/ping`)).rejects.toThrow();
    await other.dispose();
  });
});

describe('pty pair', () => {
  let pair: PtyPair;
  const ports: SerialPort[] = [];
  beforeAll(async () => {
    pair = await createPtyPair();
  });
  afterAll(async () => {
    await Promise.all(ports.filter((p) => p.isOpen).map((p) => new Promise<void>((resolve) => p.close(() => resolve()))));
    await pair.dispose();
  });

  function open(path: string): Promise<SerialPort> {
    return new Promise((resolve, reject) => {
      const port = new SerialPort({ path, baudRate: 9600, autoOpen: false });
      port.open((err) => {
        if (err) return reject(err);
        ports.push(port);
        resolve(port);
      });
    });
  }

  function readBytes(port: SerialPort, n: number): Promise<Buffer> {
    return within(
      3_000,
      `${n} bytes on ${port.path}`,
      new Promise<Buffer>((resolve) => {
        const chunks: Buffer[] = [];
        let got = 0;
        const onData = (chunk: Buffer): void => {
          chunks.push(chunk);
          got += chunk.length;
          if (got >= n) {
            port.off('data', onData);
            resolve(Buffer.concat(chunks));
          }
        };
        port.on('data', onData);
      }),
    );
  }

  it('carries bytes both ways through serialport, raw (no echo, no line discipline)', async () => {
    expect((await stat(pair.a)).isCharacterDevice()).toBe(true);
    const gateway = await open(pair.a);
    const meter = await open(pair.b);

    // A Modbus request (SPEC §4.1) has 0x0A and 0x0D bytes in it: a cooked tty would mangle them.
    const request = Buffer.from('010300000001840A', 'hex');
    const toMeter = readBytes(meter, request.length);
    gateway.write(request);
    expect((await toMeter).equals(request)).toBe(true);

    // An RF bridge frame (SPEC §4.3) the other way.
    const frame = Buffer.from('AAA42A62015E041A5A3C1155', 'hex');
    const toGateway = readBytes(gateway, frame.length);
    meter.write(frame);
    expect((await toGateway).equals(frame)).toBe(true);
  });

  it('kill() (the adapter vanishing) makes the open port fail, and restart() brings the links back', async () => {
    const gateway = ports.find((p) => p.path === pair.a && p.isOpen) ?? (await open(pair.a));
    // A gateway reads all the time; a paused stream would never notice the hang-up.
    gateway.on('data', () => undefined);
    let seen: string | undefined;
    const failed = new Promise<string>((resolve) => {
      gateway.on('error', (err) => resolve((seen ??= `error: ${err.message}`)));
      gateway.on('close', () => resolve((seen ??= 'close')));
    });
    const pid = pair.pid();
    await pair.kill();
    expect(isAlive(pid)).toBe(false);
    // The link dangles, as a /dev/serial/by-id path does once the adapter is gone.
    await expect(stat(pair.a)).rejects.toThrow(/ENOENT/);

    // When the hang-up lands while a read is parked in poll(), serialport closes the port by itself.
    // When it lands while a read is in flight, the read returns 0 and @serialport/bindings-cpp 13
    // retries forever without an event (serialport/bindings-cpp#162): only the next write sees it
    // (EIO). A Modbus master writes every poll; a read-only bus must watch its path instead.
    await new Promise((r) => setTimeout(r, 500));
    if (seen === undefined) {
      const writeError = await new Promise<Error | null | undefined>((resolve) => gateway.write(Buffer.from([0x01]), resolve));
      expect(writeError?.message).toMatch(/EIO|not open/);
    }
    await expect(within(3_000, 'error or close after kill()', failed)).resolves.toMatch(/^(error|close)/);
    await expect(open(pair.a)).rejects.toThrow();

    await pair.restart();
    const again = await open(pair.a);
    const other = await open(pair.b);
    const bytes = Buffer.from([0x01, 0x05, 0x00, 0x00, 0xff, 0x00, 0x8c, 0x3a]);
    const received = readBytes(other, bytes.length);
    again.write(bytes);
    expect((await received).equals(bytes)).toBe(true);
  });
});
