import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { CliIo } from '../../../gateway/cli/command.js';
import { displayWidth, formatTable } from '../../../gateway/cli/commands/devices-list.js';
import { run } from '../../../gateway/cli/main.js';
import type { ModelLookup } from '../../../gateway/registry/registry.js';
import { hashSecret } from '../../../gateway/registry/secrets.js';
import { COMMANDS } from '../../../gateway/cli/commands/index.js';

const MODELS: ModelLookup = new Map([
  ['smoke-json', { transport: 'mqtt' }],
  ['smoke-ctw', { transport: 'mqtt' }],
  ['pager-json', { transport: 'mqtt' }],
  ['elec-ers1', { transport: 'modbus-rtu' }],
  ['pager-rf', { transport: 'rf-bridge' }],
] as const);

const CONFIG = `gateway: { id: gw-test }
site:
  district: "110101"
  street: { code: "110101013", name: 东花市街道 }
  communities: [{ code: "001", name: 北里社区 }]
  grids:
    - { code: "110101013001002", name: 第2网格 }
    - { code: "110101013001003", name: 第3网格 }
serial:
  - { id: rs485-1, path: /dev/ttyUSB0, protocol: modbus-rtu }
  - { id: rf-1, path: /dev/ttyUSB1, protocol: rf-bridge }
devices: ./devices.csv
users:
  - { name: wang, role: grid_worker, grids: ["110101013001002"], token: "\${TOKEN_WANG}" }
`;
const HEADER = 'id,model,grid,building,room,secret,bus,address,rf,heartbeat,resident_name,resident_phone';

let dir: string;
let out: string;
let err: string;
let hashedSecret: string;

const fastHash = (s: string) => hashSecret(s, { N: 1024, r: 8, p: 1 });
const ENV = { TOKEN_WANG: 'wang-token-0123456789' };

function cli(argv: string[], io: Partial<CliIo> = {}): Promise<number> {
  out = '';
  err = '';
  return run(argv, {
    stdout: (t) => void (out += t),
    stderr: (t) => void (err += t),
    cwd: dir,
    env: ENV,
    models: () => Promise.resolve(MODELS),
    hash: fastHash,
    ...io,
  });
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'gridedge-cli-'));
  hashedSecret = await fastHash('already-hashed');
  await writeFile(join(dir, 'gridedge.yaml'), CONFIG);
  await writeFile(
    join(dir, 'devices.csv'),
    [
      HEADER,
      `SMK-0001,smoke-json,110101013001002,7,B1-3,${hashedSecret},,,,,张阿姨,13800138000`,
      `SMK-0002,smoke-ctw,110101013001002,7,"地下一层,3号",${hashedSecret},,,,,,`,
      'ELEC-0001,elec-ers1,110101013001002,7,B1-3,,rs485-1,12,,,,',
      'PGR-0001,pager-rf,110101013001003,5,302,,rf-1,,5A3C1,,李大爷,010-65123456',
      `PGR-0002,pager-json,110101013001003,5,301,${hashedSecret},,,,,,`,
      '',
    ].join('\n'),
  );
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('usage', () => {
  it('--help and help list only the commands that exist, exit 0', async () => {
    for (const argv of [['--help'], ['-h'], ['help']]) {
      expect(await cli(argv)).toBe(0);
      for (const c of COMMANDS) expect(out).toContain(`  ${c.name} `);
      // SPEC §9's commands that have not landed yet must not be offered.
      for (const name of ['start', 'demo', 'simulate', 'rules check']) {
        if (!COMMANDS.some((c) => c.name === name)) expect(out).not.toContain(`  ${name} `);
      }
      expect(err).toBe('');
    }
  });

  it('a command help', async () => {
    expect(await cli(['help', 'devices', 'import'])).toBe(0);
    expect(out).toContain('usage: gridedge devices import FILE.csv [-c FILE]');
    expect(await cli(['config', 'check', '--help'])).toBe(0);
    expect(out).toContain('usage: gridedge config check [-c FILE]');
  });

  it('no command, an unknown command, a half command or an unknown flag: usage on stderr, exit 2', async () => {
    expect(await cli([])).toBe(2);
    expect(err).toContain('usage: gridedge <command>');
    expect(await cli(['frobnicate'])).toBe(2);
    expect(err).toMatch(/unknown command "frobnicate"[\s\S]*usage: gridedge <command>/);
    expect(out).toBe('');
    expect(await cli(['devices'])).toBe(2);
    expect(err).toContain('gridedge devices: needs one of: import, list');
    expect(await cli(['devices', 'remove'])).toBe(2);
    expect(await cli(['--verbose'])).toBe(2);
    expect(err).toContain('unknown option "--verbose"');
    expect(await cli(['config', 'check', '--bogus'])).toBe(2);
    expect(err).toMatch(/gridedge config check: Unknown option '--bogus'\nusage: gridedge config check \[-c FILE\]/);
    expect(await cli(['config', 'check', 'extra'])).toBe(2);
  });
});

describe('config check', () => {
  it('ok: a summary with grids and devices per model, exit 0; ./gridedge.yaml by default', async () => {
    expect(await cli(['config', 'check'])).toBe(0);
    expect(out).toBe('ok: gw-test, 2 grids, 5 devices (smoke-json 1, smoke-ctw 1, pager-json 1, elec-ers1 1, pager-rf 1)\n');
    expect(err).toBe('');
    expect(await cli(['config', 'check', '-c', join(dir, 'gridedge.yaml')])).toBe(0);
  });

  it('a bad grid code in the config: exit 2, the file and the field path', async () => {
    await writeFile(join(dir, 'bad.yaml'), CONFIG.replace('"110101013001003"', '"11010101300100X"'));
    expect(await cli(['config', 'check', '-c', 'bad.yaml'])).toBe(2);
    expect(err).toBe('bad.yaml: site.grids[1].code: grid code must be 15 digits (district 6 + street 3 + community 3 + grid 3)\n');
    expect(out).toBe('');
  });

  it('a bad row in the registry: exit 2, the CSV line, the device and the field', async () => {
    const csv = await readFile(join(dir, 'devices.csv'), 'utf8');
    await writeFile(join(dir, 'devices.csv'), csv.replace('ELEC-0001,elec-ers1,110101013001002', 'ELEC-0001,elec-ers1,110101013001009'));
    expect(await cli(['config', 'check'])).toBe(2);
    expect(err).toBe('devices.csv:4 (ELEC-0001): grid: grid 110101013001009 is not configured in site.grids\n');
  });

  it('a missing environment variable: exit 2, naming it and the field', async () => {
    expect(await cli(['config', 'check'], { env: {} })).toBe(2);
    expect(err).toBe('gridedge.yaml: users[0].token: environment variable TOKEN_WANG is not set\n');
  });

  it('a missing config file, and a TLS key that does not exist: exit 2', async () => {
    expect(await cli(['config', 'check', '-c', 'nope.yaml'])).toBe(2);
    expect(err).toBe('nope.yaml: cannot read: no such file\n');
    await writeFile(join(dir, 'gridedge.yaml'), `${CONFIG}mqtt: { tls: { cert: ./certs/gw.pem, key: ./certs/gw.key } }\n`);
    await mkdir(join(dir, 'certs'));
    await writeFile(join(dir, 'certs/gw.pem'), 'x');
    expect(await cli(['config', 'check'])).toBe(2);
    expect(err).toBe('gridedge.yaml: mqtt.tls.key: no such file: certs/gw.key\n');
  });

  it('warns about plain secrets in the registry file and says how to fix it', async () => {
    const csv = await readFile(join(dir, 'devices.csv'), 'utf8');
    await writeFile(join(dir, 'devices.csv'), csv.replace(`SMK-0002,smoke-ctw,110101013001002,7,"地下一层,3号",${hashedSecret}`, 'SMK-0002,smoke-ctw,110101013001002,7,"地下一层,3号",typed-by-hand'));
    expect(await cli(['config', 'check'])).toBe(0);
    expect(err).toContain('warning: devices.csv: secret: 1 device has a plain secret (line 3); hashed in memory only — run `gridedge devices import devices.csv`');
    expect(err).not.toContain('typed-by-hand');
  });

  it('a runtime failure is exit 1', async () => {
    expect(await cli(['config', 'check'], { models: () => Promise.reject(new Error('catalogue is broken')) })).toBe(1);
    expect(err).toBe('gridedge config check: catalogue is broken\n');
  });
});

describe('devices import', () => {
  it('merges and hashes; no plain secret remains in the file', async () => {
    await writeFile(join(dir, 'new.csv'), [HEADER, 'SMK-0003,smoke-json,110101013001003,9,101,brand-new-secret,,,,,,', 'ELEC-0001,elec-ers1,110101013001002,7,B1-4,,rs485-1,13,,,,'].join('\n'));
    expect(await cli(['devices', 'import', 'new.csv'])).toBe(0);
    expect(out).toBe('imported new.csv into devices.csv: 1 added, 1 replaced, 1 secret hashed; 6 devices in the registry\n');
    expect(err).toContain('warning: new.csv still holds plain secrets');
    const text = await readFile(join(dir, 'devices.csv'), 'utf8');
    expect(text).not.toContain('brand-new-secret');
    expect(text).toContain('ELEC-0001,elec-ers1,110101013001002,7,B1-4,,rs485-1,13,,,,');
    expect(await cli(['config', 'check'])).toBe(0);
    expect(out).toContain('6 devices');
  });

  it('one bad row: each problem reported, nothing written, exit 2', async () => {
    const before = await readFile(join(dir, 'devices.csv'), 'utf8');
    await writeFile(join(dir, 'new.csv'), [HEADER, 'SMK-0003,smoke-json,110101013001003,9,101,s-1,,,,,,', 'SMK-0004,smoke-json,110101013001003,9,102,,,,,,,', 'PGR-9,pager-rf,110101013001003,9,103,,rf-1,,5A3C1,,,'].join('\n'));
    expect(await cli(['devices', 'import', 'new.csv', '-c', 'gridedge.yaml'])).toBe(2);
    expect(err).toBe(
      [
        'new.csv:3 (SMK-0004): secret: required for an MQTT model (plain text, hashed on import, or scrypt$…)',
        'nothing was written: 1 problem',
        '',
      ].join('\n'),
    );
    // The first pass checks NEW.csv alone; fixed, the conflict with the registry shows up next.
    await writeFile(join(dir, 'new.csv'), [HEADER, 'PGR-9,pager-rf,110101013001003,9,103,,rf-1,,5A3C1,,,'].join('\n'));
    expect(await cli(['devices', 'import', 'new.csv'])).toBe(2);
    expect(err).toContain('new.csv:2 (PGR-9): rf: bus rf-1 rf 5A3C1 is already used by PGR-0001 (devices.csv:5)');
    expect(await readFile(join(dir, 'devices.csv'), 'utf8')).toBe(before);
  });

  it('importing the registry onto itself hashes what was typed into it by hand', async () => {
    await writeFile(join(dir, 'devices.csv'), [HEADER, 'SMK-0001,smoke-json,110101013001002,7,B1-3,typed-by-hand,,,,,,'].join('\n'));
    expect(await cli(['devices', 'import', 'devices.csv'])).toBe(0);
    expect(out).toBe('rewrote devices.csv: 1 secret hashed; 1 device in the registry\n');
    expect(await readFile(join(dir, 'devices.csv'), 'utf8')).not.toContain('typed-by-hand');
  });

  it('a registry that cannot be written is a runtime failure, exit 1', async () => {
    await writeFile(join(dir, 'gridedge.yaml'), CONFIG.replace('devices: ./devices.csv', 'devices: ./missing-folder/devices.csv'));
    await writeFile(join(dir, 'new.csv'), [HEADER, 'SMK-0003,smoke-json,110101013001003,9,101,s-123456,,,,,,'].join('\n'));
    expect(await cli(['devices', 'import', 'new.csv'])).toBe(1);
    expect(err).toMatch(/^gridedge devices import: cannot write .*missing-folder\/devices\.csv: no such file\n$/);
  });

  it('bad usage: no file, or devices inline in the config', async () => {
    expect(await cli(['devices', 'import'])).toBe(2);
    expect(err).toContain('gridedge devices import: name the CSV file to import');
    await writeFile(join(dir, 'inline.yaml'), CONFIG.replace('devices: ./devices.csv', 'devices: [{ id: S, model: smoke-json, grid: "110101013001002", secret: x }]'));
    await writeFile(join(dir, 'new.csv'), HEADER);
    expect(await cli(['devices', 'import', 'new.csv', '-c', 'inline.yaml'])).toBe(2);
    expect(err).toContain('inline.yaml: devices: the devices are listed inline');
  });
});

describe('devices list', () => {
  it('a table of where devices are and how they are reached, never secrets or residents', async () => {
    expect(await cli(['devices', 'list'])).toBe(0);
    const lines = out.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^ID +MODEL +GRID +BUILDING +ROOM +BUS\/ADDRESS\/RF$/);
    expect(lines).toHaveLength(6);
    expect(out).toMatch(/ELEC-0001 +elec-ers1 +110101013001002 +7 +B1-3 +rs485-1\/12\n/);
    expect(out).toMatch(/PGR-0001 +pager-rf +110101013001003 +5 +302 +rf-1\/5A3C1\n/);
    expect(out).toMatch(/SMK-0002 +smoke-ctw .* 地下一层,3号 +mqtt\n/);
    expect(out).not.toContain('scrypt$');
    expect(out).not.toContain(hashedSecret);
    expect(out).not.toContain('13800138000');
    expect(out).not.toContain('65123456');
    expect(out).not.toContain('张阿姨');
  });

  it('--grid filters; a bad grid is bad usage', async () => {
    expect(await cli(['devices', 'list', '--grid', '110101013001003'])).toBe(0);
    expect(out.trimEnd().split('\n').slice(1).map((l) => l.split(/ +/)[0])).toEqual(['PGR-0001', 'PGR-0002']);
    expect(await cli(['devices', 'list', '--grid', '12'])).toBe(2);
  });

  it('aligns columns holding CJK text by terminal width', () => {
    expect(displayWidth('地下一层3号')).toBe(11);
    const table = formatTable(['A', 'B'], [['地下', 'x'], ['ab', 'y']]);
    expect(table).toBe('A     B\n地下  x\nab    y\n');
  });
});
