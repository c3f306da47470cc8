import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// The installed command as an operator runs it: `node bin/gridedge.js`, which loads dist/
// (`npm test` builds before vitest runs; run `npm run build` first when running this alone).
const BIN = resolve(dirname(fileURLToPath(import.meta.url)), '../../bin/gridedge.js');

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

function gridedge(args: string[], cwd: string, env: Record<string, string> = {}): Promise<Ran> {
  return new Promise((done) => {
    execFile(process.execPath, [BIN, ...args], { cwd, env: { PATH: process.env.PATH ?? '', ...env }, timeout: 20_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      done({ code, stdout, stderr });
    });
  });
}

const CONFIG = `gateway: { id: gw-e2e }
site:
  district: "110101"
  street: { code: "110101013", name: 东花市街道 }
  communities: [{ code: "001", name: 北里社区 }]
  grids: [{ code: "110101013001002", name: 第2网格 }]
serial:
  - { id: rs485-1, path: /dev/ttyUSB0, protocol: modbus-rtu }
  - { id: rf-1, path: /dev/ttyUSB1, protocol: rf-bridge }
devices: ./devices.csv
users:
  - { name: wang, role: grid_worker, grids: ["110101013001002"], token: "\${TOKEN_WANG}" }
`;

const DEVICES = [
  'id,model,grid,building,room,secret,bus,address,rf,heartbeat,resident_name,resident_phone',
  'SMK-0001,smoke-json,110101013001002,7,B1-3,scrypt$1024$8$1$3q2+7w==$cGFzc3dvcmRwYXNzd29yZHBhc3N3b3Jk,,,,,,',
  'ELEC-0001,elec-ers1,110101013001002,7,B1-3,,rs485-1,12,,,,',
  'PGR-0001,pager-rf,110101013001002,5,302,,rf-1,,5A3C1,,,',
  '',
].join('\n');

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'gridedge-e2e-cli-'));
  await writeFile(join(dir, 'gridedge.yaml'), CONFIG);
  await writeFile(join(dir, 'devices.csv'), DEVICES);
  await writeFile(join(dir, 'bad.yaml'), CONFIG.replace('"110101013001002", name', '"1101010130010", name'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('gridedge (the installed command)', () => {
  it('--help lists the commands, exit 0', async () => {
    const r = await gridedge(['--help'], dir);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('config check');
    expect(r.stdout).toContain('devices import');
  });

  it('config check on a valid config: exit 0 and a summary', async () => {
    const r = await gridedge(['config', 'check'], dir, { TOKEN_WANG: 'wang-token-0123456789' });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('ok: gw-e2e, 1 grid, 3 devices (smoke-json 1, elec-ers1 1, pager-rf 1)\n');
  });

  it('config check on a bad config: exit 2 and the field path on stderr', async () => {
    const r = await gridedge(['config', 'check', '-c', 'bad.yaml'], dir, { TOKEN_WANG: 'wang-token-0123456789' });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('bad.yaml: site.grids[0].code: grid code must be 15 digits');
    expect(r.stdout).toBe('');
  });

  it('an unknown command: exit 2 and the usage on stderr', async () => {
    const r = await gridedge(['launch'], dir);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('usage: gridedge <command>');
  });
});
