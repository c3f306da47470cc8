// Issue 8 item 2, devices.csv: mutated import files through the real import (all or nothing,
// SPEC §11). A mutation that is still a valid registry is imported; anything else is refused with
// catalogued issues and the registry file is left byte for byte as it was. Never a throw.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { stringify } from 'csv-stringify/sync';
import { beforeAll, describe, expect, it } from 'vitest';
import { MODELS } from '../../devices/catalogue.js';
import { CONFIG_ERRORS } from '../../gateway/config/errors.js';
import { DEVICE_COLUMNS } from '../../gateway/registry/columns.js';
import { importDevices } from '../../gateway/registry/import.js';
import { readDeviceCsvFile, validateDeviceRows, type RegistryContext } from '../../gateway/registry/registry.js';
import { hashSecret } from '../../gateway/registry/secrets.js';
import { GRID, ROOT, writeGatewaySite } from '../helpers/gateway.js';
import { spawnProcess } from '../helpers/process.js';
import { makeTempDir } from '../helpers/tmp.js';
import { INVALID_UTF8 } from './mutate.js';

const NUM_RUNS = 80;
/** Cheap scrypt for the imported secrets: the cost is not what is tested. */
const hash = (s: string): Promise<string> => hashSecret(s, { N: 16, r: 1, p: 1 });
const CODES = Object.keys(CONFIG_ERRORS);

const ctx: RegistryContext = {
  models: MODELS,
  grids: new Set([GRID]),
  buses: new Map([
    ['rs485-1', 'modbus-rtu'],
    ['rf-1', 'rf-bridge'],
  ]),
  operators: new Set(['local']),
};

/** A valid import: one device of each kind, plain secrets, a resident, a heartbeat, a quoted comma. */
const VALID_ROWS: Record<string, string>[] = [
  { id: 'SMK-0901', model: 'smoke-json', grid: GRID, building: '9', room: '101', secret: 'plain-secret-1' },
  { id: 'CTW-0902', model: 'smoke-ctw', grid: GRID, building: '9', room: '地下一层,3号', secret: 'plain-secret-2', heartbeat: '4h' },
  { id: 'PGR-0903', model: 'pager-json', grid: GRID, building: '9', room: '302', secret: 'plain-secret-3', resident_name: '孙淑芬', resident_phone: '138-0000-0001' },
  { id: 'ELC-0904', model: 'elec-ers1', grid: GRID, building: '9', room: 'B1', bus: 'rs485-1', address: '7' },
  { id: 'RFP-0905', model: 'pager-rf', grid: GRID, building: '9', room: '303', bus: 'rf-1', rf: '1A2B3' },
];
const toCsv = (rows: readonly Record<string, string>[]): string => stringify([[...DEVICE_COLUMNS], ...rows.map((r) => DEVICE_COLUMNS.map((c) => r[c] ?? ''))], { record_delimiter: '\n' });
const VALID_CSV = toCsv(VALID_ROWS);

const WRONG_CELLS = [
  '',
  ' ',
  '-1',
  '0',
  '248',
  '1e3',
  '0x10',
  'NaN',
  'Infinity',
  '18446744073709551616',
  'abc',
  'smoke-xml',
  '110101013001999',
  '1100',
  'dev/+/up',
  '#',
  'a/b',
  '=HYPERLINK("http://x")',
  '\u0000',
  '"',
  'rs485-9',
  'rf-1',
  '5A3C1Z',
  '0s',
  '-5m',
  '999999999d',
  'scrypt$3$8$1$AA==$AA==',
  'x'.repeat(5_000),
];

const cellMutation = fc.tuple(fc.nat(), fc.constantFrom(...DEVICE_COLUMNS), fc.oneof(fc.constantFrom(...WRONG_CELLS), fc.string({ maxLength: 20 }))).map(([row, column, value]) => {
  const rows = VALID_ROWS.map((r) => ({ ...r }));
  (rows[row % rows.length] as Record<string, string>)[column] = value;
  return Buffer.from(toCsv(rows), 'utf8');
});

const STRUCTURAL: Buffer[] = [
  // duplicate ids, two meters on one address, two pagers with one RF id
  toCsv([...VALID_ROWS, { ...(VALID_ROWS[0] as Record<string, string>) }]),
  toCsv([...VALID_ROWS, { ...(VALID_ROWS[3] as Record<string, string>), id: 'ELC-0906' }]),
  toCsv([...VALID_ROWS, { ...(VALID_ROWS[4] as Record<string, string>), id: 'RFP-0907' }]),
  // header trouble
  VALID_CSV.replace('id,model', 'model,id,model'),
  VALID_CSV.replace('resident_phone', 'resident_fon'),
  VALID_CSV.replace(/^[^\n]*\n/, ''),
  `${DEVICE_COLUMNS.slice(0, 6).join(',')}\n${VALID_CSV.split('\n').slice(1).join('\n')}`,
  // row shapes: a cell too many, too few, an unbalanced quote, quotes inside a bare cell
  VALID_CSV.replace('SMK-0901,smoke-json', 'SMK-0901,extra,smoke-json'),
  VALID_CSV.replace(/,plain-secret-1,,,,,,$/m, ',plain-secret-1'),
  VALID_CSV.replace('SMK-0901', '"SMK-0901'),
  VALID_CSV.replace('SMK-0901', 'SMK"09"01'),
  // line endings, BOMs, encodings, empty
  VALID_CSV.replace(/\n/g, '\r\n'),
  VALID_CSV.replace(/\n/g, '\r'),
  `\uFEFF${VALID_CSV}`,
  `\uFEFF\uFEFF${VALID_CSV}`,
  '',
  '\n\n\n',
  ',,,,,,,,,,,\n',
  // a huge file: the same row 2000 times
  toCsv(Array.from({ length: 2_000 }, () => VALID_ROWS[0] as Record<string, string>)),
].map((s) => Buffer.from(s, 'utf8'));

const byteLevel = fc.oneof(
  fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 4 }).map((flips) => {
    const b = Buffer.from(VALID_CSV, 'utf8');
    for (const [at, x] of flips) b[at % b.length] = (b[at % b.length] ?? 0) ^ x;
    return b;
  }),
  fc.nat().map((n) => Buffer.from(VALID_CSV, 'utf8').subarray(0, n % Buffer.byteLength(VALID_CSV))),
  fc.tuple(fc.nat(), fc.constantFrom(...INVALID_UTF8, [0x00], [0xb5, 0xd8])).map(([at, seq]) => {
    const b = Buffer.from(VALID_CSV, 'utf8');
    const i = at % b.length;
    return Buffer.concat([b.subarray(0, i), Buffer.from(seq), b.subarray(i)]);
  }),
  // the same file as Excel on a Chinese Windows saves it: GBK, not UTF-8 (孙 is CB EF in GBK)
  fc.constant(Buffer.from(VALID_CSV.replace('孙淑芬', 'XXX'), 'utf8')).map((b) => Buffer.concat([b.subarray(0, b.length - 20), Buffer.from([0xcb, 0xef]), b.subarray(b.length - 20)])),
  fc.uint8Array({ maxLength: 2_000 }).map((b) => Buffer.from(b)),
);

let dir: string;
let registryFile: string;
let original: Buffer;
const outcomes = { imported: 0, refused: 0 };

beforeAll(async () => {
  dir = (await makeTempDir('gridedge-fuzz-csv-')).path;
  registryFile = join(dir, 'devices.csv');
  // The registry as a gateway has it: hashed secrets, and a meter on address 1 of rs485-1.
  const rows: Record<string, string>[] = [
    { id: 'SMK-0101', model: 'smoke-json', grid: GRID, building: '1', room: '101', secret: await hash('s1') },
    { id: 'ELC-0102', model: 'elec-ers1', grid: GRID, building: '1', room: 'B1', bus: 'rs485-1', address: '1' },
  ];
  await writeFile(registryFile, toCsv(rows), 'utf8');
  original = await readFile(registryFile);
});

async function expectImportedOrRefused(bytes: Buffer): Promise<void> {
  const newFile = join(dir, 'new.csv');
  await writeFile(newFile, bytes);
  const result = await importDevices({ newFile, registryFile, ctx, hash });
  const after = await readFile(registryFile);
  if (result.ok) {
    // Still a valid registry, which now holds what was imported.
    const reread = await readDeviceCsvFile(registryFile);
    expect(reread.issues).toEqual([]);
    expect(validateDeviceRows(reread.rows, ctx).issues).toEqual([]);
    expect(reread.rows.length).toBe(result.total);
    outcomes.imported++;
    await writeFile(registryFile, original);
    return;
  }
  expect(result.issues.length).toBeGreaterThan(0);
  for (const issue of result.issues) {
    expect(CODES).toContain(issue.code);
    expect(issue.code).toMatch(/^REG_ERR_/);
    expect(issue.message.length).toBeGreaterThan(0);
    expect(issue.file).toBe(newFile);
  }
  expect(after.equals(original), 'a refused import changed the registry').toBe(true);
  outcomes.refused++;
}

describe('devices import: every mutated CSV is imported whole or refused with issues, the registry unchanged', () => {
  it('the base import is valid', async () => {
    expect(VALID_CSV.split('\n')[0]).toBe(DEVICE_COLUMNS.join(','));
    await expectImportedOrRefused(Buffer.from(VALID_CSV, 'utf8'));
    expect(outcomes.imported).toBe(1);
  });

  it(`a wrong value in one cell (${NUM_RUNS} runs)`, async () => {
    await fc.assert(fc.asyncProperty(cellMutation, expectImportedOrRefused), { numRuns: NUM_RUNS });
  });

  it('duplicate ids and addresses, header and row shape trouble, line endings, BOMs, a 2000-row file', async () => {
    for (const bytes of STRUCTURAL) await expectImportedOrRefused(bytes);
  });

  it(`byte flips, truncation, invalid UTF-8, NUL, GBK, random bytes (${NUM_RUNS} runs)`, async () => {
    await fc.assert(fc.asyncProperty(byteLevel, expectImportedOrRefused), { numRuns: NUM_RUNS });
    console.info(`csv import fuzz: outcomes ${JSON.stringify(outcomes)}`);
  });

  it('gridedge devices import of a refused file: exit code 2, "nothing was written", the registry unchanged', async () => {
    const site = await writeGatewaySite({ devices: [] });
    const before = await readFile(join(site.dir, 'devices.csv'));
    const bad = join(site.dir, 'bad.csv');
    await writeFile(bad, VALID_CSV.replace('SMK-0901,smoke-json', 'SMK-0901,smoke-xml'), 'utf8');
    const proc = await spawnProcess(process.execPath, [join(ROOT, 'bin/gridedge.js'), 'devices', 'import', bad, '-c', site.configPath], { name: 'gridedge-devices-import', cwd: site.dir });
    const { code } = await proc.waitForExit(30_000);
    expect(code).toBe(2);
    expect(proc.output()).toMatch(/nothing was written/);
    expect(proc.output()).toMatch(/model/);
    expect((await readFile(join(site.dir, 'devices.csv'))).equals(before)).toBe(true);
  });
});
