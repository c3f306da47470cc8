#!/usr/bin/env node
// Generates the example site examples/donghuashi/ (gridedge.yaml, devices.csv): 东花市街道 with 26
// grids and about 300 devices, including the places of the reference scenario (SPEC §10).
//
//   node scripts/make-example-site.mjs [--out DIR] [--check]
//
// Deterministic: the same script writes the same bytes (seeded PRNG, salts derived from device
// ids), so the generated files can be committed and diffed. --check compares instead of writing
// and exits 1 when the committed files are stale.
//
// Plain JavaScript on purpose: it runs before `npm run build` and imports nothing from the
// TypeScript sources. The secret hash format is reimplemented from gateway/registry/secrets.ts.
// DEMO ONLY: every MQTT device's plain secret is `dhs-demo-<id>` and the HTTP tokens are written in
// the example's README. A real site imports its own secrets with `gridedge devices import`.
import { createHash, scrypt } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

// ---- the site ---------------------------------------------------------------------------------

const DISTRICT = '110101'; // 东城区, GB/T 2260
const STREET = { code: '110101013', name: '东花市街道' };

/** Invented but plausible community names; `grids` is how many unit grids each has (26 in all). */
const COMMUNITIES = [
  { code: '001', name: '北里社区', grids: 5 },
  { code: '002', name: '南里社区', grids: 5 },
  { code: '003', name: '花市枣苑社区', grids: 4 },
  { code: '004', name: '忠实里社区', grids: 4 },
  { code: '005', name: '广渠门外社区', grids: 4 },
  { code: '006', name: '斜街社区', grids: 4 },
];

/**
 * @typedef {{ code: string, name: string, community: string, no: number }} Grid
 * @typedef {{ id: string, model: string, grid: string, building: string, room: string,
 *   secret?: string, bus?: string, address?: number, rf?: string, heartbeat?: string,
 *   resident_name?: string, resident_phone?: string }} Device
 */

/** @returns {Grid[]} grids numbered 第1网格…第26网格 across the street, SPEC §1 codes. */
function makeGrids() {
  /** @type {Grid[]} */
  const grids = [];
  for (const c of COMMUNITIES) {
    for (let g = 1; g <= c.grids; g++) {
      const no = grids.length + 1;
      grids.push({ code: `${STREET.code}${c.code}${String(g).padStart(3, '0')}`, name: `第${no}网格`, community: c.code, no });
    }
  }
  return grids;
}

// ---- determinism ------------------------------------------------------------------------------

/** mulberry32: a small seeded PRNG, so the file is the same on every run. */
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const random = prng(0x0dc5_2024);
/** @template T @param {readonly T[]} list @returns {T} */
const pick = (list) => /** @type {T} */ (list[Math.floor(random() * list.length)]);
const int = (min, max) => min + Math.floor(random() * (max - min + 1));

// ---- secrets ----------------------------------------------------------------------------------

/** The demo rule for a device's MQTT password; the simulators and `gridedge demo` use it too. */
const demoSecret = (id) => `dhs-demo-${id}`;

const SCRYPT = { N: 4096, r: 8, p: 1 }; // the cost gateway/registry/secrets.ts uses
const KEY_LENGTH = 32;

/**
 * `scrypt$N$r$p$saltB64$hashB64`, exactly as gateway/registry/secrets.ts hashSecret() writes it,
 * but with a salt derived from the device id instead of random bytes so the output is
 * reproducible. Fine for demo secrets that are public anyway; never for real ones.
 */
function hashDemoSecret(id, secret) {
  const salt = createHash('sha256').update(`gridedge example salt:${id}`).digest().subarray(0, 16);
  return new Promise((resolvePromise, reject) => {
    scrypt(secret, salt, KEY_LENGTH, { ...SCRYPT, maxmem: 64 * 1024 * 1024 }, (err, key) => {
      if (err) reject(err);
      else resolvePromise(`scrypt$${SCRYPT.N}$${SCRYPT.r}$${SCRYPT.p}$${salt.toString('base64')}$${key.toString('base64')}`);
    });
  });
}

/** HTTP bearer tokens are kept as `sha256:<hex>` (gateway/config/tokens.ts). */
const sha256Token = (token) => `sha256:${createHash('sha256').update(token, 'utf8').digest('hex')}`;

/** Demo-only HTTP users; the tokens are documented in examples/donghuashi/README.md. */
const DEMO_USERS = [
  { name: 'admin', role: 'admin', token: 'demo-token-admin-dhs07' },
  { name: 'dispatcher', role: 'dispatcher', token: 'demo-token-dispatcher-dhs07' },
  { name: 'wang', role: 'grid_worker', grids: ['110101013001002'], token: 'demo-token-wang-dhs07' },
];

// ---- people and places ------------------------------------------------------------------------

const SURNAMES = ['王', '李', '张', '刘', '陈', '杨', '赵', '黄', '周', '吴', '徐', '孙', '马', '朱', '胡', '郭', '何', '高', '林', '罗'];
const GIVEN = ['桂兰', '秀英', '淑珍', '玉华', '凤英', '秀兰', '德明', '建国', '振华', '淑芬', '文华', '玉珍', '国庆', '福生', '宝山', '素琴', '丽华', '春生', '瑞芳', '永贵'];

let phoneSeq = 0;
/** Obviously fake numbers: 138-0000-xxxx. */
const fakePhone = () => `138-0000-${String(++phoneSeq).padStart(4, '0')}`;
const fakeName = () => `${pick(SURNAMES)}${pick(GIVEN)}`;

/** Rooms where smoke detectors go: group rentals, basements, bungalows (平房). */
function rentalRoom() {
  switch (int(0, 5)) {
    case 0:
      return `B1-${int(1, 12)}`;
    case 1:
      return `地下一层${int(1, 9)}号`;
    case 2:
      return `${int(1, 6)}${String(int(1, 4)).padStart(2, '0')}`;
    case 3:
      return `${int(1, 3)}单元${int(1, 6)}${String(int(1, 4)).padStart(2, '0')}`;
    case 4:
      return `平房${pick(['东', '西', '南', '北'])}厢`;
    default:
      return `${int(1, 6)}${String(int(1, 4)).padStart(2, '0')}-${pick(['A', 'B', 'C'])}`;
  }
}
const flat = () => `${int(1, 3)}单元${int(1, 6)}${String(int(1, 4)).padStart(2, '0')}`;
const building = () => String(int(1, 24));

// ---- devices ----------------------------------------------------------------------------------

const SCENARIO_GRID = '110101013001002'; // 第2网格, SPEC §10

/**
 * @param {Grid[]} grids
 * @returns {{ devices: Device[], scenario: Record<string, string> }}
 */
function makeDevices(grids) {
  /** @type {Device[]} */
  const devices = [];
  const counters = new Map();
  const nextId = (prefix) => {
    const n = (counters.get(prefix) ?? 0) + 1;
    counters.set(prefix, n);
    return `${prefix}-${String(n).padStart(4, '0')}`;
  };
  const resident = () => ({ resident_name: fakeName(), resident_phone: fakePhone() });

  // The reference scenario first (SPEC §10), with readable ids: <MODEL>-<building 2><community 2>-<room>.
  const scenario = {
    meter: 'ELC-0701-B13',
    smokeJson: 'SMK-0701-B13',
    smokeCtw: 'CTW-0701-B13',
    pagerRf: 'RFP-0501-302',
    pagerJson: 'PGR-0501-302',
  };
  devices.push(
    { id: scenario.meter, model: 'elec-ers1', grid: SCENARIO_GRID, building: '7', room: 'B1-3', bus: 'rs485-1', address: 1 },
    { id: scenario.smokeJson, model: 'smoke-json', grid: SCENARIO_GRID, building: '7', room: 'B1-3' },
    { id: scenario.smokeCtw, model: 'smoke-ctw', grid: SCENARIO_GRID, building: '7', room: 'B1-3', heartbeat: '4h' },
    { id: scenario.pagerRf, model: 'pager-rf', grid: SCENARIO_GRID, building: '5', room: '302', bus: 'rf-1', rf: '5A3C1', ...resident() },
    { id: scenario.pagerJson, model: 'pager-json', grid: SCENARIO_GRID, building: '5', room: '302', ...resident() },
  );

  // Modbus meters: at 9600 baud one poll (8-byte request, 63-byte answer, turnaround, gap) takes
  // about 100 ms, so 8 meters fit a 1 s poll interval per bus. Building 7's basement rentals are
  // on rs485-1, building 9's on rs485-2 (both in 第2网格, next to the gateway cabinet).
  const basement = ['B1-1', 'B1-2', 'B1-4', 'B1-5', 'B1-6', 'B1-7', '地下一层 2号', '地下一层,3号', 'B1-8', 'B1-9', 'B1-10', 'B1-11', 'B1-12', 'B1-13', 'B1-14'];
  let room = 0;
  for (let address = 2; address <= 8; address++) {
    devices.push({ id: nextId('ELC'), model: 'elec-ers1', grid: SCENARIO_GRID, building: '7', room: /** @type {string} */ (basement[room++]), bus: 'rs485-1', address });
  }
  for (let address = 1; address <= 8; address++) {
    devices.push({ id: nextId('ELC'), model: 'elec-ers1', grid: SCENARIO_GRID, building: '9', room: /** @type {string} */ (basement[room++ % basement.length]), bus: 'rs485-2', address });
  }

  // 433 MHz RF pagers reach the bridge from the buildings around the gateway: grids 1–3.
  const rfIds = new Set(['5A3C1']);
  const rfGrids = grids.filter((g) => g.community === '001' && g.no <= 3);
  for (let i = 0; i < 30; i++) {
    let rf;
    do rf = int(0, 0xfffff).toString(16).toUpperCase().padStart(5, '0');
    while (rfIds.has(rf));
    rfIds.add(rf);
    devices.push({ id: nextId('RFP'), model: 'pager-rf', grid: pick(rfGrids).code, building: building(), room: flat(), bus: 'rf-1', rf, ...resident() });
  }

  // Every grid gets smoke detectors in rental rooms and 4G pagers for elderly residents.
  for (const grid of grids) {
    const smoke = int(6, 9);
    for (let i = 0; i < smoke; i++) {
      if (random() < 0.55) devices.push({ id: nextId('SMK'), model: 'smoke-json', grid: grid.code, building: building(), room: rentalRoom() });
      // NB-IoT detectors report rarely to save battery: 4 h heartbeat, offline after 8 h.
      else devices.push({ id: nextId('CTW'), model: 'smoke-ctw', grid: grid.code, building: building(), room: rentalRoom(), heartbeat: '4h' });
    }
    const pagers = int(1, 3);
    for (let i = 0; i < pagers; i++) {
      devices.push({ id: nextId('PGR'), model: 'pager-json', grid: grid.code, building: building(), room: flat(), ...resident() });
    }
  }
  return { devices, scenario };
}

// ---- output -----------------------------------------------------------------------------------

const COLUMNS = ['id', 'model', 'grid', 'building', 'room', 'secret', 'bus', 'address', 'rf', 'heartbeat', 'resident_name', 'resident_phone'];

/** RFC 4180: quote a cell only when it holds a comma, a quote or a line break. */
const csvCell = (v) => (v === undefined ? '' : /[",\r\n]/.test(String(v)) ? `"${String(v).replace(/"/g, '""')}"` : String(v));

async function devicesCsv(devices) {
  const secrets = await Promise.all(devices.map((d) => (isMqtt(d.model) ? hashDemoSecret(d.id, demoSecret(d.id)) : Promise.resolve(undefined))));
  const lines = [COLUMNS.join(',')];
  devices.forEach((d, i) => {
    const row = { ...d, secret: secrets[i] };
    lines.push(COLUMNS.map((c) => csvCell(row[c])).join(','));
  });
  return `${lines.join('\n')}\n`;
}

const isMqtt = (model) => model === 'smoke-json' || model === 'smoke-ctw' || model === 'pager-json';

function gridedgeYaml(grids) {
  const q = (s) => JSON.stringify(s);
  const communities = COMMUNITIES.map((c) => `    - { code: ${q(c.code)}, name: ${c.name} }`).join('\n');
  const gridLines = grids.map((g) => `    - { code: ${q(g.code)}, name: ${g.name} }   # ${COMMUNITIES.find((c) => c.code === g.community)?.name}`).join('\n');
  const users = DEMO_USERS.map(
    (u) => `  - { name: ${u.name}, role: ${u.role}, ${u.grids ? `grids: [${u.grids.map(q).join(', ')}], ` : ''}tokenHash: ${q(sha256Token(u.token))} }`,
  ).join('\n');
  return `# gridedge.yaml for 东花市街道 (东城区, Beijing): an example site, SPEC §11.
# Generated by scripts/make-example-site.mjs — edit the generator, not this file.
# Check it with:  gridedge config check -c examples/donghuashi/gridedge.yaml
#
# DEMO ONLY: the device secrets in devices.csv follow a public rule and the HTTP tokens below are
# written in README.md. A real installation sets its own (see README.md, "Real installations").

gateway: { id: gw-dhs-07, dataDir: ./data }

site:
  district: ${q(DISTRICT)}                      # 东城区
  street: { code: ${q(STREET.code)}, name: ${STREET.name} }
  communities:
${communities}
  grids:                                 # 15 digits: district 6 + street 3 + community 3 + grid 3
${gridLines}

mqtt:
  listen: { host: 0.0.0.0, port: 1883 }   # smoke detectors and 4G pagers connect here
  # tls: { port: 8883, cert: ./certs/gw.pem, key: ./certs/gw.key }
  maxPayloadBytes: 16384
  rateLimit: { perSecond: 20, burst: 100 }

# USB serial adapters. /dev/ttyUSB numbers change with the order the adapters are found at boot:
# on a real gateway use the stable names, e.g.
#   path: /dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A10K3Q7D-if00-port0
#   path: /dev/serial/by-id/usb-1a86_USB_Serial-if00-port0
# (ls -l /dev/serial/by-id/ shows yours).
# One elec-ers1 poll at 9600 baud takes about 81 ms (measured), so a bus holds about 12 meters at a 1 s interval.
serial:
  - { id: rs485-1, path: /dev/ttyUSB0, protocol: modbus-rtu, baudRate: 9600, pollInterval: 1s, timeout: 300ms, retries: 2 }   # building 7 basement
  - { id: rs485-2, path: /dev/ttyUSB2, protocol: modbus-rtu, baudRate: 9600, pollInterval: 1s, timeout: 300ms, retries: 2 }   # building 9 basement
  - { id: rf-1, path: /dev/ttyUSB1, protocol: rf-bridge, baudRate: 19200 }                                                  # 433 MHz pagers

devices: ./devices.csv

sinks:
  - { type: embedded, retention: 30d }
  # - { type: influxdb1, url: "http://127.0.0.1:8086", database: gridedge }

# Space held back for alarms when the disk fills (docs/SPEC-NOTES.md "Disk full"); 0 keeps none.
# store: { reserveBytes: 16MiB }

# The city platform's broker; leave out to run stand-alone.
# uplink: { url: "mqtt://127.0.0.1:1884", prefix: city/110101013, username: gw-dhs-07, password: "\${GRIDEDGE_UPLINK_PASSWORD}" }

rules: [builtin]

escalation: { critical: 60s, major: 5m, minor: 30m, info: none }

http: { host: 127.0.0.1, port: 8080 }

# DEMO ONLY tokens (README.md lists them). Real users: token: "\${TOKEN_WANG}" from the environment,
# or tokenHash: "sha256:<hex>" of a long random token (openssl rand -hex 24).
users:
${users}
`;
}

// ---- main -------------------------------------------------------------------------------------

async function main(argv) {
  const outIndex = argv.indexOf('--out');
  const out = outIndex >= 0 && argv[outIndex + 1] ? resolve(argv[outIndex + 1]) : join(ROOT, 'examples', 'donghuashi');
  const check = argv.includes('--check');

  const grids = makeGrids();
  if (grids.length !== 26 || grids[1]?.code !== SCENARIO_GRID || grids[1]?.name !== '第2网格') throw new Error('the site must have 26 grids, the 2nd being 110101013001002');
  const { devices } = makeDevices(grids);

  const files = {
    'gridedge.yaml': gridedgeYaml(grids),
    'devices.csv': await devicesCsv(devices),
  };

  if (check) {
    const stale = [];
    for (const [name, content] of Object.entries(files)) {
      const current = await readFile(join(out, name), 'utf8').catch(() => undefined);
      if (current !== content) stale.push(name);
    }
    if (stale.length > 0) {
      console.error(`make-example-site: stale in ${out}: ${stale.join(', ')} (run node scripts/make-example-site.mjs)`);
      return 1;
    }
    return 0;
  }

  await mkdir(out, { recursive: true });
  for (const [name, content] of Object.entries(files)) await writeFile(join(out, name), content);
  const byModel = new Map();
  for (const d of devices) byModel.set(d.model, (byModel.get(d.model) ?? 0) + 1);
  console.log(`make-example-site: ${out}: ${grids.length} grids, ${devices.length} devices (${[...byModel].map(([m, n]) => `${m} ${n}`).join(', ')})`);
  return 0;
}

process.exitCode = await main(process.argv.slice(2));
