import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { sleep, startHarness, type TestDevice } from './harness.js';

// DESIGN.md: "~52 KiB per idle aedes client — measure it". A measurement, not a gate: it runs
// only with GRIDEDGE_BROKER_MEMORY=<clients> (e.g. 2000), because it needs the machine to itself.
// The clients run in a child process so that only the broker's memory is in this one.
const N = Number(process.env.GRIDEDGE_BROKER_MEMORY ?? 0);

const CLIENTS_SCRIPT = `
import { connect } from 'mqtt';
const [port, n] = process.argv.slice(1).map(Number);
let up = 0;
for (let i = 0; i < n; i++) {
  const id = 'MEM-' + i;
  const c = connect({ host: '127.0.0.1', port, clientId: id, username: id, password: 'mem', protocolVersion: 4, reconnectPeriod: 0, keepalive: 600,
    will: { topic: 'dev/' + id + '/status', payload: 'offline', qos: 1, retain: true } });
  c.on('connect', () => { c.subscribe('dev/' + id + '/down', { qos: 1 }); if (++up === n) process.stdout.write('up\\n'); });
  c.on('error', (e) => { process.stderr.write(e.message + '\\n'); process.exit(1); });
  if (i % 200 === 199) await new Promise((r) => setTimeout(r, 50));
}
setInterval(() => {}, 1000);
`;

describe.skipIf(!N)('memory per idle client', () => {
  it(`${N} idle devices`, { timeout: 300_000 }, async () => {
    const devices: TestDevice[] = Array.from({ length: N }, (_, i) => ({ id: `MEM-${i}`, model: 'smoke-json', secret: 'mem' }));
    // Cheap scrypt: this measures memory, not the first-connect cost of a storm.
    const h = await startHarness({ devices, hashParams: { N: 1024, r: 8, p: 1 } });
    const gc = (globalThis as { gc?: () => void }).gc;
    const measure = async (): Promise<{ rss: number; heap: number }> => {
      gc?.();
      await sleep(200);
      gc?.();
      const m = process.memoryUsage();
      return { rss: m.rss, heap: m.heapUsed + m.external };
    };
    const before = await measure();
    const child = spawn(process.execPath, ['--input-type=module', '-e', CLIENTS_SCRIPT, String(h.port), String(N)], { cwd: process.cwd() });
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (b: Buffer) => b.toString().includes('up') && resolve());
      let err = '';
      child.stderr.on('data', (b: Buffer) => (err += b.toString()));
      child.once('exit', (code) => reject(new Error(`clients exited with ${code}: ${err.slice(0, 500)}`)));
    });
    await sleep(1_000);
    const after = await measure();
    expect(h.broker.clients()).toBe(N);
    const kib = (x: number): string => ((x / N) / 1024).toFixed(1);
    console.log(`${N} idle clients: RSS +${kib(after.rss - before.rss)} KiB/client, heap+external +${kib(after.heap - before.heap)} KiB/client${gc ? '' : ' (no --expose-gc)'}`);
    child.kill('SIGKILL');
    await h.stop();
  });
});
