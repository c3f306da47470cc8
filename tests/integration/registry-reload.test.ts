import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { run } from '../../gateway/cli/main.js';
import { DEVICE_COLUMNS } from '../../gateway/registry/columns.js';
import { cleanupAll } from '../helpers/cleanup.js';
import { GRID, connectAsDevice, makeDevices, startGatewayInProcess, waitUntil, writeGatewaySite } from '../helpers/gateway.js';

// SPEC §11: "the gateway reads it at start and when it changes". An installer imports a new
// detector while the gateway runs; it can connect within seconds, nothing restarts. A file that
// no longer validates is refused and the devices already loaded keep working.
describe('registry reload', () => {
  afterAll(async () => {
    await cleanupAll();
  });

  it('picks up imported devices and refuses an invalid file', async () => {
    const [a, b] = makeDevices('SMK', 2, { model: 'smoke-json' }) as [ReturnType<typeof makeDevices>[number], ReturnType<typeof makeDevices>[number]];
    const site = await writeGatewaySite({ devices: [a] });
    const gw = await startGatewayInProcess(site, { watchRegistry: true });
    try {
      await expect(connectAsDevice(gw.url, b)).rejects.toThrow(/Not authorized|5/);

      const newCsv = join(site.dir, 'new.csv');
      const row: Record<string, string> = { id: b.id, model: b.model, grid: GRID, building: b.building, room: b.room, secret: b.secret };
      writeFileSync(newCsv, `${DEVICE_COLUMNS.join(',')}\n${DEVICE_COLUMNS.map((c) => row[c] ?? '').join(',')}\n`);
      let err = '';
      expect(await run(['devices', 'import', newCsv, '-c', site.configPath], { stdout: () => {}, stderr: (t) => void (err += t) }), err).toBe(0);

      let connected = false;
      await waitUntil('the imported device is accepted', async () => {
        try {
          const client = await connectAsDevice(gw.url, b);
          await client.endAsync();
          connected = true;
        } catch {
          connected = false;
        }
        return connected;
      }, 15_000, 500);

      // An installer's typo: the file no longer validates. The gateway keeps what it has.
      const registryFile = join(site.dir, 'devices.csv');
      writeFileSync(registryFile, readFileSync(registryFile, 'utf8').replaceAll(GRID, '1101010130010'));
      await waitUntil('the invalid file is reported', () => gw.logs().some((l) => l.includes('registry file changed but is invalid')), 15_000, 200);
      const client = await connectAsDevice(gw.url, a);
      await client.endAsync();
    } finally {
      await gw.stop();
    }
  });
});
