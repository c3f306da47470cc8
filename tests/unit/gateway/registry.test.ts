import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { formatIssue, type ConfigIssue } from '../../../gateway/config/errors.js';
import { DEVICE_COLUMNS, type DeviceCells } from '../../../gateway/registry/columns.js';
import { parseDeviceCsv, stringifyDeviceCsv } from '../../../gateway/registry/csv.js';
import { importDevices } from '../../../gateway/registry/import.js';
import { loadRegistry, validateDeviceRows, type ModelLookup, type RegistryContext, type SourceRow } from '../../../gateway/registry/registry.js';
import { hashSecret, isSecretHash, verifySecret } from '../../../gateway/registry/secrets.js';

// The catalogue is injected: these tests know models only by their transport.
const MODELS: ModelLookup = new Map([
  ['smoke-json', { transport: 'mqtt' }],
  ['smoke-ctw', { transport: 'mqtt' }],
  ['pager-json', { transport: 'mqtt' }],
  ['elec-ers1', { transport: 'modbus-rtu' }],
  ['pager-rf', { transport: 'rf-bridge' }],
] as const);

const CTX: RegistryContext = {
  models: MODELS,
  grids: new Set(['110101013001002', '110101013001003']),
  buses: new Map([
    ['rs485-1', 'modbus-rtu'],
    ['rf-1', 'rf-bridge'],
  ] as const),
};

/** scrypt with a small N: same format, verifySecret reads the parameters from the hash. */
const fastHash = (s: string) => hashSecret(s, { N: 1024, r: 8, p: 1 });

const HEADER = 'id,model,grid,building,room,secret,bus,address,rf,heartbeat,resident_name,resident_phone';
const GOOD = [
  HEADER,
  'SMK-0001,smoke-json,110101013001002,7,B1-3,plain-secret-1,,,,,,',
  'SMK-0002,smoke-ctw,110101013001002,7,"地下一层,3号",plain-secret-2,,,,1h,张阿姨,13800138000',
  'ELEC-0001,elec-ers1,110101013001002,7,B1-3,,rs485-1,12,,,,',
  'PGR-0001,pager-rf,110101013001003,5,302,,rf-1,,5a3c1,35d,李大爷,010-6512 3456',
  'PGR-0002,pager-json,110101013001003,5,301,plain-secret-3,,,,,,',
].join('\n');

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'gridedge-registry-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function rows(csv: string, file = 'devices.csv'): { rows: SourceRow[]; issues: readonly ConfigIssue[] } {
  const parsed = parseDeviceCsv(csv, file);
  return { rows: parsed.rows.map((r) => ({ file, line: r.line, cells: r.cells })), issues: parsed.issues };
}

/** The problems of a CSV as `line field: message`. */
function problems(csv: string): string[] {
  const parsed = rows(csv);
  const checked = validateDeviceRows(parsed.rows, CTX);
  return [...parsed.issues, ...checked.issues].map((i) => `${i.line ?? '-'} ${i.field ?? '-'}: ${i.message}`);
}

const row = (cells: Partial<Record<(typeof DEVICE_COLUMNS)[number], string>>) => DEVICE_COLUMNS.map((c) => csvCell(cells[c] ?? '')).join(',');
const csvCell = (v: string) => (/[",\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v);

describe('CSV shape (SPEC §11)', () => {
  it('reads UTF-8 rooms, quoted commas and empty cells as absent', () => {
    const parsed = parseDeviceCsv(GOOD, 'devices.csv');
    expect(parsed.issues).toEqual([]);
    expect(parsed.rows.map((r) => r.line)).toEqual([2, 3, 4, 5, 6]);
    expect(parsed.rows[0]?.cells).toEqual({ id: 'SMK-0001', model: 'smoke-json', grid: '110101013001002', building: '7', room: 'B1-3', secret: 'plain-secret-1' });
    expect(parsed.rows[1]?.cells.room).toBe('地下一层,3号');
    expect(parsed.rows[1]?.cells.resident_name).toBe('张阿姨');
  });

  it('takes columns in any order, a BOM, CRLF line ends and blank lines', () => {
    const csv = '\uFEFFmodel,id,grid,building,room,secret,bus,address,rf,heartbeat,resident_name,resident_phone\r\n\r\nsmoke-json,SMK-9,110101013001002,7,地下一层3号,s,,,,,,\r\n';
    const parsed = parseDeviceCsv(csv, 'd.csv');
    expect(parsed.issues).toEqual([]);
    expect(parsed.bom).toBe(true);
    expect(parsed.rows).toEqual([{ line: 3, cells: { id: 'SMK-9', model: 'smoke-json', grid: '110101013001002', building: '7', room: '地下一层3号', secret: 's' } }]);
  });

  it('requires the header and checks it', () => {
    expect(parseDeviceCsv('', 'd.csv').issues[0]).toMatchObject({ code: 'REG_ERR_HEADER', message: `the file is empty; the first line must be the header ${HEADER}` });
    expect(parseDeviceCsv('SMK-1,smoke-json,110101013001002,,,s,,,,,,\n', 'd.csv').issues[0]?.message).toBe(`the first line must be the header ${HEADER}`);
    const bad = parseDeviceCsv('id,model,grid,building,room,secret,bus,adress,rf,heartbeat,resident_name\n', 'd.csv');
    expect(bad.issues.map((i) => i.message)).toEqual(['unknown column "adress"', 'missing columns address, resident_phone', `the header is ${HEADER}`]);
    expect(bad.issues[0]).toMatchObject({ code: 'REG_ERR_HEADER', line: 1 });
  });

  it('a row with the wrong number of cells names its line', () => {
    expect(problems(`${HEADER}\nSMK-1,smoke-json,110101013001002,7,地下一层,3号,s,,,,,,\n`)).toEqual([
      '2 -: the row has 13 cells, the header has 12 (a comma inside a cell needs "quotes")',
    ]);
  });

  it('a quoted cell over two lines: the row is located where it starts', () => {
    const parsed = parseDeviceCsv(`${HEADER}\nA,smoke-json,110101013001002,7,"two\nlines",s,,,,,,\nB,smoke-json,110101013001002,7,x,s,,,,,,\n`, 'd.csv');
    expect(parsed.rows.map((r) => r.line)).toEqual([2, 4]);
  });

  it('refuses a file that is not UTF-8 (Excel saves GBK on a Chinese Windows)', () => {
    const gbk = Buffer.concat([Buffer.from(`${HEADER}\nA,smoke-json,110101013001002,7,`), Buffer.from([0xb5, 0xd8, 0xcf, 0xc2]), Buffer.from(',s,,,,,,\n')]);
    expect(parseDeviceCsv(gbk, 'd.csv').issues[0]).toMatchObject({ code: 'REG_ERR_CSV', message: 'the file is not UTF-8 text (in Excel: save as "CSV UTF-8")' });
  });

  it('an unclosed quote is a CSV error', () => {
    expect(parseDeviceCsv(`${HEADER}\nA,smoke-json,"110101013001002,7\n`, 'd.csv').issues[0]).toMatchObject({ code: 'REG_ERR_CSV' });
  });

  it('the writer and the reader agree on any cell text', () => {
    const cell = fc.string({ unit: fc.oneof(fc.constantFrom(',', '"', '\n', '\r', ' ', '号', '地', 'B', '-'), fc.string({ unit: 'grapheme', minLength: 1, maxLength: 1 })), minLength: 1, maxLength: 12 }).filter((s) => s.trim() === s && s !== '');
    const rowArb = fc.record(Object.fromEntries(DEVICE_COLUMNS.map((c) => [c, cell])), { requiredKeys: ['id'] }) as fc.Arbitrary<DeviceCells>;
    fc.assert(
      fc.property(fc.array(rowArb, { maxLength: 5 }), (written) => {
        const back = parseDeviceCsv(stringifyDeviceCsv(written), 'd.csv');
        expect(back.issues).toEqual([]);
        expect(back.rows.map((r) => r.cells)).toEqual(written);
      }),
    );
  });
});

describe('row validation: every bad row, with its line and field', () => {
  it('accepts the good file', () => {
    expect(problems(GOOD)).toEqual([]);
  });

  it.each([
    ['a bad grid code', { grid: '11010101300100' }, 'grid: grid code must be 15 digits (district 6 + street 3 + community 3 + grid 3)'],
    ['a grid not configured in the site', { grid: '110101013001009' }, 'grid: grid 110101013001009 is not configured in site.grids'],
    ['an unknown model', { model: 'smoke-xyz' }, 'model: unknown model "smoke-xyz" (known: smoke-json, smoke-ctw, pager-json, elec-ers1, pager-rf)'],
    ['a missing secret for an MQTT model', { secret: '' }, 'secret: required for an MQTT model (plain text, hashed on import, or scrypt$…)'],
    ['a malformed hash', { secret: 'scrypt$1$2$3$x$y' }, 'secret: starts with scrypt$ but is not a valid scrypt hash'],
    ['a bad id', { id: 'dev/1' }, 'id: must be 1–64 of A–Z a–z 0–9 _ . : - (no / + # or spaces), starting with a letter or digit'],
    ['a missing id', { id: '' }, 'id: required'],
    ['a bad heartbeat', { heartbeat: '60' }, 'heartbeat: must be a duration of at least 1s: 30s, 15m, 1h, 35d'],
    ['a serial cell on an MQTT model', { bus: 'rs485-1' }, 'bus: smoke-json is an MQTT model: it has no bus'],
    ['half a resident', { resident_name: '王' }, 'resident_phone: required with resident_name'],
  ])('%s', (_what, change, expected) => {
    const base = { id: 'SMK-1', model: 'smoke-json', grid: '110101013001002', building: '7', room: 'B1-3', secret: 's' };
    expect(problems(`${HEADER}\n${row({ ...base, ...change })}`)).toEqual([`2 ${expected}`]);
  });

  it.each([
    ['no bus', { bus: '' }, 'bus: required for elec-ers1 (a modbus-rtu bus id from serial)'],
    ['no address', { address: '' }, 'address: required for elec-ers1 (Modbus slave address 1–247)'],
    ['address 0', { address: '0' }, 'address: Modbus slave address must be a whole number 1–247'],
    ['address 248', { address: '248' }, 'address: Modbus slave address must be a whole number 1–247'],
    ['address 0x10', { address: '0x10' }, 'address: Modbus slave address must be a whole number 1–247'],
    ['a bus not configured', { bus: 'rs485-9' }, 'bus: bus rs485-9 is not configured in serial (configured: rs485-1, rf-1)'],
    ['an RF bus', { bus: 'rf-1' }, 'bus: bus rf-1 is a rf-bridge bus; elec-ers1 needs a modbus-rtu bus'],
    ['a secret', { secret: 'x' }, 'secret: elec-ers1 is a serial model: it has no secret'],
  ])('elec-ers1 with %s', (_what, change, expected) => {
    const base = { id: 'ELEC-1', model: 'elec-ers1', grid: '110101013001002', bus: 'rs485-1', address: '12' };
    expect(problems(`${HEADER}\n${row({ ...base, ...change })}`)).toEqual([`2 ${expected}`]);
  });

  it.each([
    ['no bus', { bus: '' }, 'bus: required for pager-rf (a rf-bridge bus id from serial)'],
    ['no rf', { rf: '' }, 'rf: required for pager-rf (EV1527 id, 5 hex digits)'],
    ['4 hex digits', { rf: '5A3C' }, 'rf: EV1527 id must be 5 hex digits, e.g. 5A3C1'],
    ['a non-hex digit', { rf: '5A3CG' }, 'rf: EV1527 id must be 5 hex digits, e.g. 5A3C1'],
    ['an address', { address: '3' }, 'address: pager-rf is an RF model: it has no Modbus address'],
  ])('pager-rf with %s', (_what, change, expected) => {
    const base = { id: 'PGR-1', model: 'pager-rf', grid: '110101013001002', bus: 'rf-1', rf: '5A3C1' };
    expect(problems(`${HEADER}\n${row({ ...base, ...change })}`)).toEqual([`2 ${expected}`]);
  });

  it('duplicate ids, (bus, address) and (bus, rf) — rf compared in any case', () => {
    const csv = [
      HEADER,
      'A,smoke-json,110101013001002,,,s,,,,,,',
      'A,smoke-json,110101013001002,,,s,,,,,,',
      'E1,elec-ers1,110101013001002,,,,rs485-1,12,,,,',
      'E2,elec-ers1,110101013001002,,,,rs485-1,12,,,,',
      'P1,pager-rf,110101013001002,,,,rf-1,,5a3c1,,,',
      'P2,pager-rf,110101013001002,,,,rf-1,,5A3C1,,,',
    ].join('\n');
    expect(problems(csv)).toEqual([
      '3 id: duplicate id A (first at devices.csv:2)',
      '5 address: bus rs485-1 address 12 is already used by E1 (devices.csv:4)',
      '7 rf: bus rf-1 rf 5A3C1 is already used by P1 (devices.csv:6)',
    ]);
  });

  it('a device id that is also an MQTT operator username', () => {
    const parsed = rows(`${HEADER}\nlocal,smoke-json,110101013001002,,,s,,,,,,`);
    expect(validateDeviceRows(parsed.rows, { ...CTX, operators: new Set(['local']) }).issues.map(formatIssue)).toEqual([
      'devices.csv:2 (local): id: local is also an MQTT operator username (mqtt.operators)',
    ]);
  });

  it('reports every problem of every row at once, each with the device id', () => {
    const csv = [HEADER, 'A,smoke-json,1101010130010,,,,,,,,,', 'B,nope,110101013001002,,,,,,,,,', 'C,elec-ers1,110101013001002,,,,,,,,,'].join('\n');
    const parsed = rows(csv);
    const issues = validateDeviceRows(parsed.rows, CTX).issues;
    expect(issues.map(formatIssue)).toEqual([
      'devices.csv:2 (A): grid: grid code must be 15 digits (district 6 + street 3 + community 3 + grid 3)',
      'devices.csv:2 (A): secret: required for an MQTT model (plain text, hashed on import, or scrypt$…)',
      'devices.csv:3 (B): model: unknown model "nope" (known: smoke-json, smoke-ctw, pager-json, elec-ers1, pager-rf)',
      'devices.csv:4 (C): bus: required for elec-ers1 (a modbus-rtu bus id from serial)',
      'devices.csv:4 (C): address: required for elec-ers1 (Modbus slave address 1–247)',
    ]);
  });

  it('never repeats a phone number or a secret in a message', () => {
    const csv = [HEADER, 'A,smoke-json,110101013001002,,,scrypt$bad-secret-value,,,,,张三,call-me-13800138000'].join('\n');
    const text = problems(csv).join('\n');
    expect(text).toContain('resident_phone: not a phone number');
    expect(text).not.toContain('13800138000');
    expect(text).not.toContain('bad-secret-value');
  });
});

describe('the registry', () => {
  async function loadGood() {
    const file = join(dir, 'devices.csv');
    const hashed = await fastHash('hashed-secret');
    await writeFile(file, GOOD.replace('plain-secret-3', hashed));
    const result = await loadRegistry(file, CTX, { configFile: 'gridedge.yaml', hash: fastHash });
    if (!result.ok) throw new Error(result.issues.map(formatIssue).join('\n'));
    return { ...result, file, hashed };
  }

  it('indexes devices by id, by (bus, address) and by (bus, rf)', async () => {
    const { registry } = await loadGood();
    expect(registry.size).toBe(5);
    expect(registry.get('SMK-0002')).toMatchObject({
      model: 'smoke-ctw',
      place: { grid: '110101013001002', building: '7', room: '地下一层,3号' },
      heartbeatMs: 3_600_000,
      resident: { name: '张阿姨', phone: '13800138000' },
    });
    expect(registry.byAddress('rs485-1', 12)?.id).toBe('ELEC-0001');
    expect(registry.byAddress('rs485-1', 13)).toBeUndefined();
    expect(registry.byRf('rf-1', '5A3C1')?.id).toBe('PGR-0001');
    expect(registry.byRf('rf-1', '5a3c1')?.id).toBe('PGR-0001');
    expect(registry.byRf('rf-2', '5A3C1')).toBeUndefined();
    expect(registry.get('PGR-0001')?.rf).toBe('5A3C1');
    expect(registry.list().map((d) => d.id)).toEqual(['SMK-0001', 'SMK-0002', 'ELEC-0001', 'PGR-0001', 'PGR-0002']);
    expect(Object.isFrozen(registry.get('SMK-0001')?.place)).toBe(true);
  });

  it('verify() checks the password against the scrypt hash', async () => {
    const { registry } = await loadGood();
    await expect(registry.verify('PGR-0002', 'hashed-secret')).resolves.toBe(true);
    await expect(registry.verify('PGR-0002', 'hashed-secreT')).resolves.toBe(false);
    await expect(registry.verify('SMK-0001', 'plain-secret-1')).resolves.toBe(true);
    await expect(registry.verify('SMK-0001', '')).resolves.toBe(false);
    await expect(registry.verify('NOPE', 'plain-secret-1')).resolves.toBe(false);
    await expect(registry.verify('ELEC-0001', '')).resolves.toBe(false);
  });

  it('plain secrets in the registry file: hashed in memory, and a warning that names the lines and the fix', async () => {
    const { registry, warnings, hashed } = await loadGood();
    for (const d of registry.list()) if (d.secretHash !== undefined) expect(isSecretHash(d.secretHash)).toBe(true);
    expect(JSON.stringify(registry.list())).not.toContain('plain-secret');
    expect(registry.get('PGR-0002')?.secretHash).toBe(hashed);
    expect(warnings).toHaveLength(1);
    expect(formatIssue(warnings[0] as ConfigIssue)).toMatch(/2 devices have a plain secret \(lines 2, 3\).*gridedge devices import/);
    expect(formatIssue(warnings[0] as ConfigIssue)).not.toContain('plain-secret');
  });

  it('load returns every row error at once and builds nothing', async () => {
    const file = join(dir, 'devices.csv');
    await writeFile(file, `${GOOD}\nX,smoke-json,110101013009999,,,s,,,,,,\nSMK-0001,smoke-json,110101013001002,,,s,,,,,,\n`);
    const result = await loadRegistry(file, CTX, { configFile: 'gridedge.yaml', hash: fastHash });
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.issues.map((i) => `${i.line} ${i.field}`)).toEqual(['7 grid', '8 id']);
  });

  it('a missing registry file is an error', async () => {
    const result = await loadRegistry(join(dir, 'none.csv'), CTX, { configFile: 'gridedge.yaml' });
    expect(result).toMatchObject({ ok: false, issues: [{ code: 'REG_ERR_READ' }] });
  });

  it('builds from an inline list; errors name devices[i].field in the config file', async () => {
    const ok = await loadRegistry([{ id: 'SMK-1', model: 'smoke-json', grid: '110101013001002', room: 'B1-3', secret: 'pw-1' }], CTX, { configFile: 'gridedge.yaml', hash: fastHash });
    expect(ok.ok).toBe(true);
    if (ok.ok) {
      expect(ok.warnings).toEqual([]);
      await expect(ok.registry.verify('SMK-1', 'pw-1')).resolves.toBe(true);
    }
    const bad = await loadRegistry([{ id: 'SMK-1', model: 'smoke-json', grid: '110101013001002', secret: 'x' }, { id: 'E', model: 'elec-ers1', grid: '110101013001002', bus: 'rs485-1', address: '300' }], CTX, { configFile: 'gridedge.yaml' });
    expect(bad.ok).toBe(false);
    if (!bad.ok) expect(bad.issues.map(formatIssue)).toEqual(['gridedge.yaml: devices[1].address: Modbus slave address must be a whole number 1–247']);
  });
});

describe('devices import (SPEC §11)', () => {
  const registryFile = () => join(dir, 'devices.csv');
  const newFile = () => join(dir, 'new.csv');

  async function seed(): Promise<string> {
    const hash = await fastHash('old-secret');
    await writeFile(registryFile(), [HEADER, `SMK-0001,smoke-json,110101013001002,7,B1-3,${hash},,,,,,`, 'ELEC-0001,elec-ers1,110101013001002,7,B1-3,,rs485-1,12,,,,', ''].join('\n'));
    return hash;
  }

  it('writes nothing when one row is bad, and reports each bad row', async () => {
    await seed();
    const before = await readFile(registryFile());
    await writeFile(newFile(), [HEADER, 'SMK-0009,smoke-json,110101013001002,7,101,new-secret,,,,,,', 'SMK-0010,smoke-json,110101013009999,7,102,new-secret,,,,,,', 'E9,elec-ers1,110101013001002,,,,rs485-1,,,,,'].join('\n'));
    const result = await importDevices({ newFile: newFile(), registryFile: registryFile(), ctx: CTX, hash: fastHash });
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.issues.map((i) => `${i.file}:${i.line} ${i.field}`)).toEqual([`${newFile()}:3 grid`, `${newFile()}:4 address`]);
    expect(await readFile(registryFile())).toEqual(before);
    expect(await readdir(dir)).toEqual(['devices.csv', 'new.csv']);
  });

  it('does not create the registry when the import is refused', async () => {
    await writeFile(newFile(), [HEADER, 'SMK-1,smoke-json,110101013001002,,,,,,,,,'].join('\n'));
    const result = await importDevices({ newFile: newFile(), registryFile: registryFile(), ctx: CTX, hash: fastHash });
    expect(result.ok).toBe(false);
    await expect(stat(registryFile())).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('a conflict with the registry is reported on the imported row', async () => {
    await seed();
    await writeFile(newFile(), [HEADER, 'ELEC-0002,elec-ers1,110101013001002,7,B1-4,,rs485-1,12,,,,'].join('\n'));
    const result = await importDevices({ newFile: newFile(), registryFile: registryFile(), ctx: CTX, hash: fastHash });
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.issues.map(formatIssue)).toEqual([`${newFile()}:2 (ELEC-0002): address: bus rs485-1 address 12 is already used by ELEC-0001 (${registryFile()}:3)`]);
  });

  it('merges: same id replaced in place, new ids appended, plain secrets hashed, existing hashes kept', async () => {
    const oldHash = await seed();
    await writeFile(newFile(), [HEADER, 'ELEC-0001,elec-ers1,110101013001003,9,地下一层3号,,rs485-1,13,,,,', 'PGR-0001,pager-json,110101013001003,5,"302,北",sos-secret-1,,,,15m,李大爷,13900139000'].join('\n'));
    const result = await importDevices({ newFile: newFile(), registryFile: registryFile(), ctx: CTX, hash: fastHash });
    expect(result).toEqual({ ok: true, added: 1, replaced: 1, hashed: 1, total: 3, newFileHasPlainSecrets: true });

    const text = await readFile(registryFile(), 'utf8');
    expect(text).not.toContain('sos-secret-1');
    const parsed = parseDeviceCsv(text, 'devices.csv');
    expect(parsed.issues).toEqual([]);
    expect(parsed.rows.map((r) => r.cells.id)).toEqual(['SMK-0001', 'ELEC-0001', 'PGR-0001']);
    expect(parsed.rows[0]?.cells.secret).toBe(oldHash);
    expect(parsed.rows[1]?.cells).toMatchObject({ grid: '110101013001003', room: '地下一层3号', address: '13' });
    expect(parsed.rows[2]?.cells.room).toBe('302,北');
    const newHash = parsed.rows[2]?.cells.secret ?? '';
    expect(isSecretHash(newHash)).toBe(true);
    await expect(verifySecret('sos-secret-1', newHash)).resolves.toBe(true);

    const loaded = await loadRegistry(registryFile(), CTX, { configFile: 'gridedge.yaml' });
    expect(loaded).toMatchObject({ ok: true, warnings: [] });
    expect(await readdir(dir)).toEqual(['devices.csv', 'new.csv']);
  });

  it('creates a missing registry readable by its owner only', async () => {
    await writeFile(newFile(), [HEADER, 'SMK-1,smoke-json,110101013001002,,,pw-123456,,,,,,'].join('\n'));
    const result = await importDevices({ newFile: newFile(), registryFile: registryFile(), ctx: CTX, hash: fastHash });
    expect(result).toMatchObject({ ok: true, added: 1, total: 1 });
    expect((await stat(registryFile())).mode & 0o777).toBe(0o600);
  });

  it('importing the registry onto itself hashes the plain secrets typed into it', async () => {
    await writeFile(registryFile(), GOOD);
    const result = await importDevices({ newFile: registryFile(), registryFile: registryFile(), ctx: CTX, hash: fastHash });
    expect(result).toMatchObject({ ok: true, hashed: 3, total: 5, newFileHasPlainSecrets: false });
    const text = await readFile(registryFile(), 'utf8');
    expect(text).not.toMatch(/plain-secret/);
    const loaded = await loadRegistry(registryFile(), CTX, { configFile: 'gridedge.yaml' });
    expect(loaded).toMatchObject({ ok: true, warnings: [] });
    if (loaded.ok) await expect(loaded.registry.verify('SMK-0002', 'plain-secret-2')).resolves.toBe(true);
  });
});
