import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { formatDuration, parseDuration } from '../../../gateway/config/duration.js';
import { substituteEnv } from '../../../gateway/config/env.js';
import { ConfigError } from '../../../gateway/config/errors.js';
import { loadConfig, parseConfig } from '../../../gateway/config/load.js';
import { GatewayConfigSchema, parseByteSize } from '../../../gateway/config/schema.js';
import { hashToken, tokenMatches } from '../../../gateway/config/tokens.js';

const SITE = `
site:
  district: "110101"
  street: { code: "110101013", name: 东花市街道 }
  communities: [{ code: "001", name: 北里社区 }, { code: "002", name: 南里社区 }]
  grids:
    - { code: "110101013001002", name: 第2网格 }
    - { code: "110101013002001", name: 第1网格 }
`;
const MINIMAL = `gateway: { id: gw-test }\n${SITE}devices: ./devices.csv\n`;

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'gridedge-config-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function load(yaml: string, env: Record<string, string> = {}) {
  const file = join(dir, 'gridedge.yaml');
  await writeFile(file, yaml);
  return loadConfig(file, { env, displayName: 'gridedge.yaml' });
}

async function errorOf(yaml: string, env: Record<string, string> = {}): Promise<ConfigError> {
  try {
    await load(yaml, env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('expected the config to be refused');
}

describe('duration', () => {
  it.each([
    ['500ms', 500],
    ['5s', 5_000],
    ['2m', 120_000],
    ['1h', 3_600_000],
    ['30d', 2_592_000_000],
    ['1.5s', 1_500],
    ['1h30m', 5_400_000],
    [' 10s ', 10_000],
  ])('%s is %d ms', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it.each(['', '5', '300', 's', '5 s', '5sec', '-5s', '1.5.2s', '0.5ms', '5S', '1w'])('refuses %j', (text) => {
    expect(parseDuration(text)).toBeUndefined();
  });

  it('formats back to a duration that parses to the same value', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 10 ** 12 }), (ms) => parseDuration(formatDuration(ms)) === ms));
    expect(formatDuration(300_000)).toBe('5m');
    expect(formatDuration(1_500)).toBe('1500ms');
  });
});

describe('${NAME} substitution', () => {
  it('substitutes in every string value, at any depth, but not in keys', () => {
    const { value, missing } = substituteEnv({ a: 'x-${A}-y', list: [{ b: '${B}' }], n: 3, '${A}': 'k' }, { A: '1', B: '2' });
    expect(missing).toEqual([]);
    expect(value).toEqual({ a: 'x-1-y', list: [{ b: '2' }], n: 3, '${A}': 'k' });
  });

  it('reports each missing variable with its path', () => {
    const { missing } = substituteEnv({ users: [{ token: '${T1}' }, { token: '${T2}' }] }, { T1: 'set' });
    expect(missing).toEqual([{ path: ['users', 1, 'token'], name: 'T2' }]);
  });

  it('keeps $${NAME} as a literal and treats an empty variable as set', () => {
    expect(substituteEnv('a$${X}b', {}).value).toBe('a${X}b');
    expect(substituteEnv('${E}', { E: '' })).toEqual({ value: '', missing: [] });
  });

  it('does not re-parse the substituted text: a value with YAML syntax stays one string', async () => {
    const cfg = await load(`${MINIMAL}mqtt: { operators: [{ username: local, password: "\${PW}" }] }\n`, { PW: 'a: b # c' });
    expect(cfg.mqtt.operators[0]?.password).toBe('a: b # c');
  });

  it('a missing variable is a config error naming the field', async () => {
    const err = await errorOf(`${MINIMAL}mqtt: { operators: [{ username: local, password: "\${GRIDEDGE_MQTT_LOCAL_PASSWORD}" }] }\n`);
    expect(err.code).toBe('CFG_ERR_ENV');
    expect(err.message).toBe('gridedge.yaml: mqtt.operators[0].password: environment variable GRIDEDGE_MQTT_LOCAL_PASSWORD is not set');
  });

  it('a substituted number works for a port', async () => {
    const cfg = await load(`${MINIMAL}http: { port: "\${PORT}" }\n`, { PORT: '9090' });
    expect(cfg.http.port).toBe(9090);
  });
});

describe('defaults (SPEC §11)', () => {
  it('fills every default of a minimal config', async () => {
    const cfg = await load(MINIMAL);
    expect(cfg.gateway).toEqual({ id: 'gw-test', dataDir: join(dir, 'data') });
    expect(cfg.mqtt).toEqual({ listen: { host: '0.0.0.0', port: 1883 }, maxPayloadBytes: 16_384, rateLimit: { perSecond: 20, burst: 100 }, operators: [] });
    expect(cfg.serial).toEqual([]);
    expect(cfg.sinks).toEqual([{ type: 'embedded', retention: 30 * 86_400_000 }]);
    expect(cfg.outbox).toEqual({ maxBytes: 512 * 1024 * 1024 });
    expect(cfg.uplink).toBeUndefined();
    expect(cfg.rules).toEqual(['builtin']);
    expect(cfg.escalation).toEqual({ critical: 60_000, major: 300_000, minor: 1_800_000, info: null });
    expect(cfg.http).toEqual({ host: '127.0.0.1', port: 8080 });
    expect(cfg.users).toEqual([]);
  });

  it('serial buses default by protocol (SPEC §4.1, §4.3) and take durations in ms', async () => {
    const cfg = await load(`${MINIMAL}serial:
  - { id: rs485-1, path: /dev/ttyUSB0, protocol: modbus-rtu, pollInterval: 2s, timeout: 250ms }
  - { id: rf-1, path: /dev/ttyUSB1, protocol: rf-bridge }
`);
    expect(cfg.serial[0]).toEqual({ id: 'rs485-1', path: '/dev/ttyUSB0', protocol: 'modbus-rtu', baudRate: 9600, dataBits: 8, parity: 'none', stopBits: 1, pollInterval: 2000, timeout: 250, retries: 2, gap: 5 });
    expect(cfg.serial[1]).toMatchObject({ protocol: 'rf-bridge', baudRate: 19_200 });
  });

  it('sink defaults: influxdb1 creates its database, batches of 5000 every second', async () => {
    const cfg = await load(`${MINIMAL}sinks:
  - { type: influxdb1, url: "http://127.0.0.1:8086", database: gridedge }
  - { type: influxdb2, url: "https://influx.example", org: city, bucket: gridedge, token: t }
`);
    expect(cfg.sinks).toEqual([
      { type: 'influxdb1', url: 'http://127.0.0.1:8086', database: 'gridedge', createDatabase: true, batchSize: 5000, flushInterval: 1000 },
      { type: 'influxdb2', url: 'https://influx.example', org: 'city', bucket: 'gridedge', token: 't', batchSize: 5000, flushInterval: 1000 },
    ]);
  });

  it('TLS listener defaults to port 8883 on the plain listener host; uplink client id to the gateway id', async () => {
    const cfg = await load(`${MINIMAL}mqtt: { listen: { host: 10.0.0.2 }, tls: { cert: ./certs/gw.pem, key: /etc/gw.key } }
uplink: { url: "mqtts://city.example:8883", prefix: city/110101013 }
`);
    expect(cfg.mqtt.tls).toEqual({ host: '10.0.0.2', port: 8883, cert: join(dir, 'certs/gw.pem'), key: '/etc/gw.key' });
    expect(cfg.uplink).toEqual({ url: 'mqtts://city.example:8883', prefix: 'city/110101013', clientId: 'gw-test' });
  });

  it('escalation: durations, or none', async () => {
    const cfg = await load(`${MINIMAL}escalation: { critical: 30s, minor: none }\n`);
    expect(cfg.escalation).toEqual({ critical: 30_000, major: 300_000, minor: null, info: null });
  });

  it('sizes take units', () => {
    expect(parseByteSize('512MiB')).toBe(512 * 1024 ** 2);
    expect(parseByteSize('16KiB')).toBe(16_384);
    expect(parseByteSize('1GB')).toBe(1e9);
    expect(parseByteSize('100')).toBe(100);
    expect(parseByteSize('lots')).toBeUndefined();
  });
});

describe('the loaded config', () => {
  it('resolves relative paths against the config file, not the working directory', async () => {
    const cfg = await load(`gateway: { id: gw-test, dataDir: var/data }\n${SITE}devices: ../devices.csv\nrules: [builtin, ./rules/local.yaml, /etc/gridedge/extra.yaml]\n`);
    expect(cfg.gateway.dataDir).toBe(join(dir, 'var/data'));
    expect(cfg.devices).toBe(join(dir, '../devices.csv'));
    expect(cfg.rules).toEqual(['builtin', join(dir, 'rules/local.yaml'), '/etc/gridedge/extra.yaml']);
  });

  it('is frozen all the way down', async () => {
    const cfg = await load(MINIMAL);
    expect(Object.isFrozen(cfg)).toBe(true);
    expect(Object.isFrozen(cfg.site.grids[0])).toBe(true);
    expect(() => {
      (cfg.http as { port: number }).port = 1;
    }).toThrow(TypeError);
  });

  it('keeps only a sha256 hash of plain tokens', async () => {
    const token = 'wang-0123456789abcdef';
    const cfg = await load(`${MINIMAL}users:
  - { name: wang, role: grid_worker, grids: ["110101013001002"], token: "\${TOKEN_WANG}" }
  - { name: li, role: admin, tokenHash: "${hashToken('li-0123456789abcdef').toUpperCase().replace('SHA256', 'sha256')}" }
http: { metricsToken: prometheus-0123456789 }
`, { TOKEN_WANG: token });
    expect(cfg.users).toEqual([
      { name: 'wang', role: 'grid_worker', grids: ['110101013001002'], tokenHash: hashToken(token) },
      { name: 'li', role: 'admin', grids: [], tokenHash: hashToken('li-0123456789abcdef') },
    ]);
    expect(JSON.stringify(cfg)).not.toContain(token);
    expect(JSON.stringify(cfg)).not.toContain('prometheus-0123456789');
    expect(tokenMatches(token, cfg.users[0]?.tokenHash ?? '')).toBe(true);
    expect(tokenMatches('wrong', cfg.users[0]?.tokenHash ?? '')).toBe(false);
    expect(tokenMatches('prometheus-0123456789', cfg.http.metricsTokenHash ?? '')).toBe(true);
  });

  it('takes an inline device list', async () => {
    const cfg = await load(`gateway: { id: gw-test }\n${SITE}devices:\n  - { id: SMK-1, model: smoke-json, grid: "110101013001002", building: 7, room: B1-3, secret: s3cret }\n`);
    expect(cfg.devices).toEqual([{ id: 'SMK-1', model: 'smoke-json', grid: '110101013001002', building: '7', room: 'B1-3', secret: 's3cret' }]);
  });
});

describe('errors name the file and the field', () => {
  it('a bad grid code', async () => {
    const err = await errorOf(MINIMAL.replace('"110101013002001"', '"11010101300200"'));
    expect(err.code).toBe('CFG_ERR_INVALID');
    expect(err.message).toBe('gridedge.yaml: site.grids[1].code: grid code must be 15 digits (district 6 + street 3 + community 3 + grid 3)');
  });

  it('a grid outside the street, and a grid of an unconfigured community', async () => {
    expect((await errorOf(MINIMAL.replace('"110101013002001"', '"110101014002001"'))).message).toBe(
      'gridedge.yaml: site.grids[1].code: grid code must start with the street code 110101013',
    );
    expect((await errorOf(MINIMAL.replace('"110101013002001"', '"110101013009001"'))).message).toMatch(
      /^gridedge\.yaml: site\.grids\[1\]\.code: grid code's community digits 009 are not a configured community/,
    );
  });

  it('unquoted codes get a hint, not a silently lost leading zero', async () => {
    const err = await errorOf(MINIMAL.replace('{ code: "001"', '{ code: 001'));
    expect(err.message).toContain('site.communities[0].code: community code must be a quoted string of 3 digits');
  });

  it('rejects unknown keys at the key, with a hint for top-level typos', async () => {
    const err = await errorOf(`${MINIMAL}escalaton: { critical: 30s }\nmqtt: { listen: { prot: 1884 } }\n`);
    expect(err.issues.map((i) => `${i.path}: ${i.message}`).sort()).toEqual([
      'escalaton: unknown key (did you mean escalation?)',
      'mqtt.listen.prot: unknown key',
    ]);
  });

  it('lists every problem at once', async () => {
    const err = await errorOf(`gateway: { id: "gw/1" }\n${SITE}devices: ./d.csv\nhttp: { port: 70000 }\nsinks: [{ type: influx }]\nescalation: { major: 5 }\n`);
    const paths = err.issues.map((i) => i.path);
    expect(paths).toEqual(expect.arrayContaining(['gateway.id', 'http.port', 'sinks[0].type', 'escalation.major']));
    expect(err.message.split('\n')).toHaveLength(err.issues.length);
  });

  it('required keys', async () => {
    const err = await errorOf('gateway: { dataDir: ./d }\n');
    expect(err.issues.map((i) => `${i.path}: ${i.message}`)).toEqual(expect.arrayContaining(['gateway.id: required (string)', 'site: required (object)', 'devices: devices is a CSV file path or a list of device rows']));
  });

  it('a bare number is not a duration', async () => {
    const err = await errorOf(`${MINIMAL}serial: [{ id: b, path: /dev/ttyS0, protocol: modbus-rtu, timeout: 300 }]\n`);
    expect(err.message).toMatch(/^gridedge\.yaml: serial\[0\]\.timeout: a duration is a number and a unit/);
  });

  it('grid workers need configured grids; users need one token', async () => {
    const err = await errorOf(`${MINIMAL}users:
  - { name: a, role: grid_worker, grids: [], token: aaaaaaaaaaaaaaaaaaaa }
  - { name: b, role: grid_worker, grids: ["110101013001009"], token: bbbbbbbbbbbbbbbbbbbb }
  - { name: c, role: dispatcher, token: short }
  - { name: d, role: admin }
`);
    const got = err.issues.map((i) => `${i.path}: ${i.message}`);
    expect(got).toEqual(expect.arrayContaining([
      'users[0].grids: a grid_worker needs at least one grid',
      'users[2].token: token must be at least 16 characters (generate one: openssl rand -hex 24)',
      'users[3].token: give exactly one of token or tokenHash',
    ]));
    // Cross-section checks run once each section is valid on its own.
    const err2 = await errorOf(`${MINIMAL}users: [{ name: b, role: grid_worker, grids: ["110101013001009"], token: bbbbbbbbbbbbbbbbbbbb }]\n`);
    expect(err2.message).toBe('gridedge.yaml: users[0].grids[0]: grid 110101013001009 is not configured in site.grids');
  });

  it('duplicate bus ids, and two listeners on one port', async () => {
    const err = await errorOf(`${MINIMAL}serial:
  - { id: b1, path: /dev/ttyS0, protocol: modbus-rtu }
  - { id: b1, path: /dev/ttyS1, protocol: rf-bridge }
http: { host: 0.0.0.0, port: 1883 }
`);
    expect(err.issues.map((i) => `${i.path}: ${i.message}`)).toEqual(['serial[1].id: bus id b1 is listed twice', 'http.port: port 1883 is already used by mqtt.listen.port']);
  });

  it('YAML syntax errors name the line', async () => {
    const err = await errorOf('gateway: { id: gw\nsite: [\n');
    expect(err.code).toBe('CFG_ERR_YAML');
    expect(err.issues[0]?.line).toBeGreaterThan(0);
    expect(err.message).toMatch(/^gridedge\.yaml:\d+: YAML: /);
  });

  it('an unreadable file', async () => {
    await expect(loadConfig(join(dir, 'nope.yaml'))).rejects.toMatchObject({ code: 'CFG_ERR_READ' });
  });

  it('an empty file', () => {
    expect(() => parseConfig('', { file: join(dir, 'g.yaml'), env: {} })).toThrow('the file is empty');
  });
});

describe('the schema on its own', () => {
  it('accepts the SPEC §11 example', () => {
    const parsed = GatewayConfigSchema.safeParse({
      gateway: { id: 'gw-dhs-07', dataDir: './data' },
      site: { district: '110101', street: { code: '110101013', name: '东花市街道' }, communities: [{ code: '001', name: '北里社区' }], grids: [{ code: '110101013001002', name: '第2网格' }] },
      mqtt: { listen: { host: '0.0.0.0', port: 1883 }, tls: { port: 8883, cert: './certs/gw.pem', key: './certs/gw.key' }, maxPayloadBytes: 16384, rateLimit: { perSecond: 20, burst: 100 }, operators: [{ username: 'local', password: 'pw' }] },
      serial: [
        { id: 'rs485-1', path: '/dev/ttyUSB0', protocol: 'modbus-rtu', baudRate: 9600, pollInterval: '1s', timeout: '300ms', retries: 2 },
        { id: 'rf-1', path: '/dev/ttyUSB1', protocol: 'rf-bridge', baudRate: 19200 },
      ],
      devices: './devices.csv',
      sinks: [{ type: 'embedded', retention: '30d' }, { type: 'influxdb1', url: 'http://127.0.0.1:8086', database: 'gridedge' }, { type: 'influxdb2', url: 'https://x.example', org: 'city', bucket: 'gridedge', token: 't' }],
      uplink: { url: 'mqtt://127.0.0.1:1884', prefix: 'city/110101013', username: 'gw-dhs-07', password: 'p' },
      rules: ['builtin', './rules/local.yaml'],
      escalation: { critical: '60s', major: '5m', minor: '30m' },
      http: { host: '127.0.0.1', port: 8080 },
      users: [{ name: 'wang', role: 'grid_worker', grids: ['110101013001002'], token: 'wang-token-0123456789' }],
    });
    expect(parsed.error?.issues ?? []).toEqual([]);
  });
});
