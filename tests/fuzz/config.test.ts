// Issue 8 item 2, gridedge.yaml: generated wrong types and mutations of a valid config. Every
// outcome is a config (the mutation happened to be valid) or a ConfigError whose issues each have
// a catalogued code, a located message and the file; never another exception type. The CLI turns
// one into exit code 2 with a message naming the field (SPEC §9).
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import { CONFIG_ERRORS, ConfigError } from '../../gateway/config/errors.js';
import { parseConfig } from '../../gateway/config/load.js';
import { MAX_YAML_DEPTH, yamlTooDeepAt } from '../../devices/yaml-depth.js';
import { ROOT } from '../helpers/gateway.js';
import { spawnProcess } from '../helpers/process.js';
import { makeTempDir } from '../helpers/tmp.js';
import { INVALID_UTF8, nested, ODD_NUMBERS, paths } from './mutate.js';

const NUM_RUNS = 200;
const FILE = '/site/gridedge.yaml';
const ENV = { GRIDEDGE_UPLINK_PASSWORD: 'pw', GRIDEDGE_MQTT_LOCAL_PASSWORD: 'pw' };

/** A config with every section the schema has, valid as written. */
const VALID_TEXT = `
gateway: { id: gw-fuzz, dataDir: ./data }
site:
  district: "110101"
  street: { code: "110101013", name: 东花市街道 }
  communities: [{ code: "001", name: 北里社区 }]
  grids: [{ code: "110101013001002", name: 第2网格 }, { code: "110101013001003", name: 第3网格 }]
mqtt:
  listen: { host: 127.0.0.1, port: 1883 }
  maxPayloadBytes: 16384
  rateLimit: { perSecond: 20, burst: 100 }
  operators: [{ username: local, password: "\${GRIDEDGE_MQTT_LOCAL_PASSWORD}" }]
serial:
  - { id: rs485-1, path: /dev/ttyUSB0, protocol: modbus-rtu, baudRate: 9600, pollInterval: 1s, timeout: 300ms, retries: 2 }
  - { id: rf-1, path: /dev/ttyUSB1, protocol: rf-bridge, baudRate: 19200 }
devices: ./devices.csv
sinks: [{ type: embedded, retention: 30d }]
uplink: { url: "mqtt://127.0.0.1:1884", prefix: city/110101013, username: gw-fuzz, password: "\${GRIDEDGE_UPLINK_PASSWORD}" }
rules: [builtin]
escalation: { critical: 60s, major: 5m, minor: 30m, info: none }
http: { host: 127.0.0.1, port: 8080 }
users:
  - { name: wang, role: grid_worker, grids: ["110101013001002"], tokenHash: "sha256:2816d7d617c86822fe70f60c9ecbdcaad703f8969211f1422f1b0edb22d235cd" }
`;
const VALID = parseYaml(VALID_TEXT) as Record<string, unknown>;

const CODES = Object.keys(CONFIG_ERRORS);

type Outcome = 'valid' | 'config_error';
const outcomes: Record<Outcome, number> = { valid: 0, config_error: 0 };

/** parseConfig's only failure is a ConfigError with well-formed issues. */
function expectConfigOrConfigError(source: string): void {
  let outcome: Outcome = 'valid';
  try {
    parseConfig(source, { file: FILE, env: ENV });
  } catch (err) {
    expect(err, `${String(err)}\n${(err as Error).stack ?? ''}`).toBeInstanceOf(ConfigError);
    const e = err as ConfigError;
    expect(e.issues.length).toBeGreaterThan(0);
    for (const issue of e.issues) {
      expect(CODES).toContain(issue.code);
      expect(issue.file).toBe(FILE);
      expect(issue.message.length).toBeGreaterThan(0);
      // A field's problem names the field; only whole-file problems (an empty file) have no path.
      if (issue.code === 'CFG_ERR_ENV' || (issue.code === 'CFG_ERR_INVALID' && issue.message !== 'the file is empty')) expect(issue.path).toBeTruthy();
    }
    outcome = 'config_error';
  }
  outcomes[outcome]++;
}

// ---- structural mutations of the parsed config ---------------------------------------------

function edit(v: unknown, path: readonly (string | number)[], f: (parent: Record<string | number, unknown>, key: string | number) => void): unknown {
  const copy = structuredClone(v) as Record<string | number, unknown>;
  let parent = copy;
  for (const k of path.slice(0, -1)) parent = parent[k] as Record<string | number, unknown>;
  f(parent, path[path.length - 1] as string | number);
  return copy;
}

const wrongValue = fc.oneof(
  fc.constantFrom<unknown>(null, true, false, 0, -1, -0, 1.5, 2 ** 53 + 1, 1e21, '', 'none', '0s', '-1s', '1e309s', '999999999999d', '${UNSET_VAR}', [], {}, [[]], { a: 1 }),
  fc.string({ maxLength: 40 }),
  fc.double(),
  fc.integer(),
  fc.jsonValue({ maxDepth: 3 }),
  fc.integer({ min: 100, max: 2_000 }).map((n) => 'x'.repeat(n)),
);

const structural = fc.tuple(fc.nat(), fc.constantFrom('replace', 'delete', 'add_key'), wrongValue).map(([pick, op, value]) => {
  const all = paths(VALID);
  const path = all[pick % all.length] as (string | number)[];
  const mutated = edit(VALID, path, (parent, key) => {
    if (op === 'replace') parent[key] = value;
    else if (op === 'delete') delete parent[key];
    else if (parent[key] !== null && typeof parent[key] === 'object' && !Array.isArray(parent[key])) (parent[key] as Record<string, unknown>).unexpected = value;
    else parent[key] = value;
  });
  return toYaml(mutated);
});

// ---- text mutations of the YAML ------------------------------------------------------------

const textual = fc.oneof(
  // byte flips and truncation
  fc.tuple(fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 4 })).map(([flips]) => {
    const b = Buffer.from(VALID_TEXT, 'utf8');
    for (const [at, x] of flips) b[at % b.length] = (b[at % b.length] ?? 0) ^ x;
    return b.toString('latin1');
  }),
  fc.nat().map((n) => VALID_TEXT.slice(0, n % VALID_TEXT.length)),
  // invalid UTF-8, as the loader reads it (readFile 'utf8' turns it into U+FFFD)
  fc.tuple(fc.nat(), fc.constantFrom(...INVALID_UTF8)).map(([at, seq]) => {
    const b = Buffer.from(VALID_TEXT, 'utf8');
    const i = at % b.length;
    return Buffer.concat([b.subarray(0, i), Buffer.from(seq), b.subarray(i)]).toString('utf8');
  }),
  // numbers YAML reads oddly: .inf, .nan, 0x, 1e309, 2^64…
  fc.tuple(fc.nat(), fc.constantFrom(...ODD_NUMBERS, '.inf', '-.inf', '.nan', '0o17', '1_000', '0b101', '~')).map(([pick, n]) => {
    const numbers = [...VALID_TEXT.matchAll(/\b\d+\b/g)];
    const m = numbers[pick % numbers.length];
    if (!m || m.index === undefined) return VALID_TEXT;
    return VALID_TEXT.slice(0, m.index) + n + VALID_TEXT.slice(m.index + m[0].length);
  }),
  // YAML's own traps: tabs, anchors and aliases (billion laughs), duplicate keys, tags, a document stream
  fc.constantFrom(
    VALID_TEXT.replace('gateway:', '\tgateway:'),
    `a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n${VALID_TEXT}`,
    `${VALID_TEXT}\ngateway: { id: other }\n`,
    VALID_TEXT.replace('maxPayloadBytes: 16384', 'maxPayloadBytes: !!binary aGVsbG8='),
    VALID_TEXT.replace('maxPayloadBytes: 16384', 'maxPayloadBytes: !!js/function "function(){}"'),
    `${VALID_TEXT}\n---\n${VALID_TEXT}`,
    '\uFEFF' + VALID_TEXT,
    '\u0000',
    '',
    '[]',
    '"just a string"',
    '42',
    VALID_TEXT.replace('gw-fuzz', 'gw-\u0000fuzz'),
    VALID_TEXT.replace('gw-fuzz', '${'),
    VALID_TEXT.replace('gw-fuzz', '${GRIDEDGE_MQTT_LOCAL_PASSWORD}${NOPE}'),
  ),
  // deep nesting in flow and block style
  fc.integer({ min: 100, max: 5_000 }).map((d) => `${VALID_TEXT}\nextra: ${nested(d)}\n`),
  fc.integer({ min: 100, max: 5_000 }).map((d) => `${VALID_TEXT.replace('rules: [builtin]', `rules: ${nested(d)}`)}`),
  fc.integer({ min: 50, max: 1_000 }).map((d) => `${VALID_TEXT}\nextra:\n${Array.from({ length: d }, (_, i) => `${' '.repeat(i + 1)}- `).join('\n')}x\n`),
);

describe('gridedge.yaml: every mutation is a config or a ConfigError', () => {
  it('the base config is valid', () => {
    expect(parseConfig(VALID_TEXT, { file: FILE, env: ENV }).gateway.id).toBe('gw-fuzz');
  });

  it(`wrong types, deleted keys, unknown keys (${NUM_RUNS} runs)`, () => {
    fc.assert(fc.property(structural, expectConfigOrConfigError), { numRuns: NUM_RUNS });
  });

  it(`text mutations of the YAML: flips, truncation, invalid UTF-8, odd numbers, aliases, tags, deep nesting (${NUM_RUNS} runs)`, () => {
    fc.assert(fc.property(textual, expectConfigOrConfigError), { numRuns: NUM_RUNS });
    console.info(`config fuzz: outcomes ${JSON.stringify(outcomes)}`);
  });

  it('YAML nested deeper than its parser can recurse: CFG_ERR_YAML naming the limit, on every parse', () => {
    // yaml 2.x parses recursively: ~1000 levels overflow the stack (it reports "Maximum call stack
    // size exceeded"), and in the same process a second such parse aborted Node with a fatal
    // "RegExpCompiler Allocation failed" (see the next test). The loader refuses deep nesting first.
    const sources = [`${VALID_TEXT}\nextra: ${nested(2_000)}\n`, `${VALID_TEXT}\nextra:\n${Array.from({ length: 1_000 }, (_, i) => `${' '.repeat(i + 1)}- `).join('\n')}x\n`];
    for (let i = 0; i < 3; i++) {
      for (const source of sources) {
        let caught: unknown;
        try {
          parseConfig(source, { file: FILE, env: ENV });
        } catch (err) {
          caught = err;
        }
        expect(caught).toBeInstanceOf(ConfigError);
        expect((caught as ConfigError).code).toBe('CFG_ERR_YAML');
        expect((caught as ConfigError).message).toMatch(/nested deeper than \d+ levels/);
      }
    }
  });

  it('aliases that expand a hundredfold (billion laughs): CFG_ERR_YAML, not the yaml library\'s ReferenceError', () => {
    const laughs = `a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n${VALID_TEXT}`;
    let caught: unknown;
    try {
      parseConfig(laughs, { file: FILE, env: ENV });
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    expect((caught as ConfigError).code).toBe('CFG_ERR_YAML');
    expect((caught as ConfigError).message).toMatch(/alias/i);
  });

  it('the depth check passes real configs and does not count brackets in quotes or comments', () => {
    expect(yamlTooDeepAt(VALID_TEXT)).toBeUndefined();
    expect(yamlTooDeepAt(readFileSync(join(ROOT, 'examples/donghuashi/gridedge.yaml'), 'utf8'))).toBeUndefined();
    expect(yamlTooDeepAt(`a: "${'['.repeat(500)}" # ${'{'.repeat(500)}\nb: '${'['.repeat(500)}'\n`)).toBeUndefined();
    expect(yamlTooDeepAt(`a: ${nested(MAX_YAML_DEPTH - 1)}\n`)).toBeUndefined();
    expect(yamlTooDeepAt(`a: ${nested(MAX_YAML_DEPTH)}\n`)).toBe(1);
    expect(yamlTooDeepAt(`ok: 1\na:\n${Array.from({ length: MAX_YAML_DEPTH }, (_, i) => `${' '.repeat(i + 1)}- `).join('\n')}x\n`)).toBe(MAX_YAML_DEPTH + 1);
  });

  it('two deeply nested configs parsed in one process do not abort it (needs npm run build)', async () => {
    const script = [
      `import { parseConfig } from ${JSON.stringify(join(ROOT, 'dist/gateway/config/load.js'))};`,
      `for (const d of [2000, 2000, 10000, 50000]) {`,
      `  try { parseConfig('extra: ' + '['.repeat(d) + ']'.repeat(d), { file: '/x/gridedge.yaml', env: {} }); } catch (e) { console.log(e.name, e.code); }`,
      `}`,
    ].join('\n');
    const proc = await spawnProcess(process.execPath, ['--input-type=module', '-e', script], { name: 'node-yaml-depth' });
    const { code } = await proc.waitForExit(30_000);
    expect(proc.output()).not.toMatch(/FATAL/);
    expect(code).toBe(0);
    expect(proc.output().match(/ConfigError CFG_ERR_YAML/g)).toHaveLength(4);
  });

  it('gridedge config check on a wrong type: exit code 2, the message names the field', async () => {
    const dir = await makeTempDir('gridedge-fuzz-cfg-');
    const file = join(dir.path, 'gridedge.yaml');
    await writeFile(file, VALID_TEXT.replace('retries: 2', 'retries: "two"').replace('${GRIDEDGE_UPLINK_PASSWORD}', 'pw').replace('${GRIDEDGE_MQTT_LOCAL_PASSWORD}', 'pw'), 'utf8');
    await writeFile(join(dir.path, 'devices.csv'), readFileSync(join(ROOT, 'examples/donghuashi/devices.csv'), 'utf8').split('\n')[0] + '\n', 'utf8');
    const proc = await spawnProcess(process.execPath, [join(ROOT, 'bin/gridedge.js'), 'config', 'check', '-c', file], { name: 'gridedge-config-check', cwd: dir.path });
    const { code } = await proc.waitForExit(20_000);
    expect(code).toBe(2);
    expect(proc.output()).toMatch(/serial\[0\]\.retries/);
  });
});
