import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { localTopics } from '../../../devices/topics.js';
import { sleep, startHarness, type Harness, type TestDevice } from './harness.js';

// Another MQTT stack than mqtt.js: Debian's mosquitto-clients, as a device and as an operator.
const run = promisify(execFile);
const SMK: TestDevice = { id: 'SMK-1', model: 'smoke-json', secret: 'secret' };
const OPERATOR = { username: 'local', password: 'op-pass' };
const PAYLOAD = '{"smoke":true,"battery":80}';

let h: Harness;

beforeAll(async () => {
  h = await startHarness({ devices: [SMK], operators: [OPERATOR] });
});
afterAll(() => h.stop());

const pubArgs = (secret: string): string[] => [
  '-V', 'mqttv311', '-h', '127.0.0.1', '-p', String(h.port),
  '-i', SMK.id, '-u', SMK.id, '-P', secret, '-t', `dev/${SMK.id}/up`, '-q', '1', '-m', PAYLOAD,
];

describe('mosquitto_pub as a device', () => {
  it('reaches onDeviceMessage with the exact payload, and waits for the PUBACK until the handler resolved', async () => {
    h.setHandler(async (msg) => {
      await sleep(300);
      h.messages.push(msg);
    });
    const t0 = performance.now();
    await run('mosquitto_pub', pubArgs(SMK.secret), { timeout: 10_000 });
    const ms = performance.now() - t0;
    console.log(`mosquitto_pub -q 1 exited after ${ms.toFixed(0)} ms with a 300 ms handler`);
    const m = h.messages.at(-1);
    expect(m?.device.id).toBe(SMK.id);
    expect(m?.payload.equals(Buffer.from(PAYLOAD))).toBe(true);
    expect(m?.qos).toBe(1);
    expect(ms).toBeGreaterThanOrEqual(290);
  });

  it('is refused with a wrong secret (CONNACK 4)', async () => {
    const err = (await run('mosquitto_pub', pubArgs('wrong'), { timeout: 10_000 }).then(
      () => undefined,
      (e: unknown) => e,
    )) as { code?: number; stderr?: string } | undefined;
    expect(err?.code).not.toBe(0);
    expect(err?.stderr ?? '').toMatch(/bad user name or password/i);
  });
});

describe('mosquitto_sub as an operator', () => {
  it('receives a publishLocal message on gridedge/readings/#', async () => {
    const sub = spawn('mosquitto_sub', [
      '-V', 'mqttv311', '-h', '127.0.0.1', '-p', String(h.port),
      '-i', 'ops-tool', '-u', OPERATOR.username, '-P', OPERATOR.password,
      '-t', localTopics.readingsFilter, '-C', '1', '-v',
    ]);
    let out = '';
    let errOut = '';
    sub.stdout.on('data', (b: Buffer) => (out += b.toString()));
    sub.stderr.on('data', (b: Buffer) => (errOut += b.toString()));
    const exited = new Promise<number | null>((resolve) => sub.once('exit', resolve));
    let exitCode: number | null | undefined;
    void exited.then((c) => (exitCode = c));
    // It subscribes at its own pace: publish until it has one message and exits (-C 1).
    const deadline = Date.now() + 10_000;
    while (exitCode === undefined && Date.now() < deadline) {
      await h.broker.publishLocal(localTopics.reading('smoke', SMK.id), '{"deviceId":"SMK-1","kind":"smoke"}');
      await sleep(50);
    }
    if (exitCode === undefined) sub.kill('SIGKILL');
    expect(errOut).toBe('');
    expect(await exited).toBe(0);
    expect(out.trim()).toBe('gridedge/readings/smoke/SMK-1 {"deviceId":"SMK-1","kind":"smoke"}');
  });
});
