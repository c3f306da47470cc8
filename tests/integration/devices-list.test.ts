import { afterAll, describe, expect, it } from 'vitest';
import { run } from '../../gateway/cli/main.js';
import { cleanupAll } from '../helpers/cleanup.js';
import { connectAsDevice, makeDevices, startGatewayInProcess, waitUntil, writeGatewaySite } from '../helpers/gateway.js';

// docs/INSTALL.md's commissioning step: `gridedge devices list` shows who has never reported,
// read from the store of a gateway that ran (or is running) on the same data directory.
describe('gridedge devices list after the gateway ran', () => {
  afterAll(async () => {
    await cleanupAll();
  });

  it('shows the last-seen time of devices that reported and "never" for the others', async () => {
    const devices = makeDevices('SMK', 2, { model: 'smoke-json' });
    const site = await writeGatewaySite({ devices });
    const cli = async () => {
      let out = '';
      let err = '';
      const code = await run(['devices', 'list', '-c', site.configPath], { stdout: (t) => void (out += t), stderr: (t) => void (err += t) });
      return { code, out, err };
    };
    const before = await cli();
    expect(before.code).toBe(0);
    expect(before.out).not.toContain('LAST SEEN');
    expect(before.err).toContain('no store');

    const gw = await startGatewayInProcess(site);
    const [reporter] = devices as [(typeof devices)[number]];
    const client = await connectAsDevice(gw.url, reporter);
    await client.publishAsync(`dev/${reporter.id}/up`, JSON.stringify({ smoke: false, battery: 90 }), { qos: 1 });
    await client.endAsync();
    await waitUntil('the reading is stored', () => gw.gateway.store.getDeviceState(reporter.id) !== undefined);

    // While the gateway is still running: the list reads its store without disturbing it.
    const during = await cli();
    await gw.stop();
    expect(during.code).toBe(0);
    const lines = during.out.trim().split('\n');
    expect(lines[0]).toContain('LAST SEEN');
    expect(lines.find((l) => l.startsWith('SMK-00'))).toMatch(/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(lines.find((l) => l.startsWith('SMK-01'))).toMatch(/never$/);
  });
});
