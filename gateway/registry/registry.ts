import { readFile } from 'node:fs/promises';
import { DeviceRecordSchema, type DeviceRecord } from '../../devices/device-record.js';
import type { Transport } from '../../devices/model.js';
import { GridCodeSchema } from '../../devices/place.js';
import { parseDuration } from '../config/duration.js';
import { describeFsError, type ConfigIssue } from '../config/errors.js';
import type { GatewayConfig } from '../config/schema.js';
import type { DeviceCells, DeviceColumn } from './columns.js';
import { parseDeviceCsv } from './csv.js';
import { hashSecret, isSecretHash, verifySecret } from './secrets.js';

/**
 * The device registry (SPEC §11): every registered device, validated against the site, the
 * serial buses and the model catalogue, indexed the three ways traffic arrives — by id (MQTT),
 * by (bus, Modbus address) and by (bus, RF id).
 */

/** What the registry needs to know of a model. The catalogue is injected so tests need no codecs. */
export interface ModelInfo {
  readonly transport: Transport;
}
export type ModelLookup = ReadonlyMap<string, ModelInfo>;

export interface RegistryContext {
  readonly models: ModelLookup;
  /** Grid codes configured in `site.grids`. */
  readonly grids: ReadonlySet<string>;
  /** Bus id → protocol, from `serial`. */
  readonly buses: ReadonlyMap<string, 'modbus-rtu' | 'rf-bridge'>;
  /**
   * MQTT usernames taken by `mqtt.operators`: a device with the same id could not be told apart
   * from the operator at CONNECT (SPEC §3 uses the device id as username).
   */
  readonly operators?: ReadonlySet<string>;
}

export function registryContext(config: Pick<GatewayConfig, 'site' | 'serial' | 'mqtt'>, models: ModelLookup): RegistryContext {
  return {
    models,
    grids: new Set(config.site.grids.map((g) => g.code)),
    buses: new Map(config.serial.map((b) => [b.id, b.protocol])),
    operators: new Set(config.mqtt.operators.map((o) => o.username)),
  };
}

/** A row and where it came from: a CSV line, or an index in the inline `devices:` list. */
export interface SourceRow {
  readonly file: string;
  readonly line?: number;
  /** Index in the inline list of gridedge.yaml. */
  readonly index?: number;
  readonly cells: DeviceCells;
}

export interface ValidRow {
  readonly source: SourceRow;
  /** `secretHash` is set when the row held a hash already. */
  readonly record: DeviceRecord;
  /** A plain secret still to be hashed (SPEC §11 allows plain secrets in a CSV to import). */
  readonly plainSecret?: string;
}

export interface ValidatedRows {
  readonly rows: readonly ValidRow[];
  readonly issues: readonly ConfigIssue[];
}

const PHONE = /^\+?[0-9][0-9 ()-]{2,30}$/;
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;

/** Checks every row and every cross-row constraint; returns all problems at once. */
export function validateDeviceRows(rows: readonly SourceRow[], ctx: RegistryContext): ValidatedRows {
  const issues: ConfigIssue[] = [];
  const valid: ValidRow[] = [];
  const ids = new Map<string, SourceRow>();
  const addresses = new Map<string, { row: SourceRow; id: string }>();
  const rfs = new Map<string, { row: SourceRow; id: string }>();

  for (const row of rows) {
    const before = issues.length;
    const report = (field: DeviceColumn | undefined, message: string) => issues.push(issueAt(row, field, message));
    const c = row.cells;

    const id = c.id;
    if (id === undefined) report('id', 'required');
    else if (!DeviceRecordSchema.shape.id.safeParse(id).success) report('id', 'must be 1–64 of A–Z a–z 0–9 _ . : - (no / + # or spaces), starting with a letter or digit');
    else if (ctx.operators?.has(id)) report('id', `${id} is also an MQTT operator username (mqtt.operators)`);
    else {
      const first = ids.get(id);
      if (first) report('id', `duplicate id ${id} (first at ${where(first)})`);
      else ids.set(id, row);
    }

    let transport: Transport | undefined;
    if (c.model === undefined) report('model', 'required');
    else {
      transport = ctx.models.get(c.model)?.transport;
      if (transport === undefined) report('model', `unknown model ${JSON.stringify(c.model)} (known: ${[...ctx.models.keys()].join(', ')})`);
    }

    if (c.grid === undefined) report('grid', 'required');
    else if (!GridCodeSchema.safeParse(c.grid).success) report('grid', 'grid code must be 15 digits (district 6 + street 3 + community 3 + grid 3)');
    else if (!ctx.grids.has(c.grid)) report('grid', `grid ${c.grid} is not configured in site.grids`);

    for (const field of ['building', 'room'] as const) {
      const v = c[field];
      if (v !== undefined && v.length > 64) report(field, 'at most 64 characters');
      if (v !== undefined && CONTROL.test(v)) report(field, 'must be one line of text');
    }

    // What a row needs depends on how its model talks (SPEC §11). Cells that belong to another
    // transport are refused too: they are what a shifted column or a wrong model looks like.
    let secretHash: string | undefined;
    let plainSecret: string | undefined;
    let address: number | undefined;
    let rf: string | undefined;
    const bus = c.bus;
    if (transport === 'mqtt') {
      if (c.secret === undefined) report('secret', 'required for an MQTT model (plain text, hashed on import, or scrypt$…)');
      else if (c.secret.startsWith('scrypt$')) {
        if (isSecretHash(c.secret)) secretHash = c.secret;
        else report('secret', 'starts with scrypt$ but is not a valid scrypt hash');
      } else plainSecret = c.secret;
      for (const field of ['bus', 'address', 'rf'] as const) if (c[field] !== undefined) report(field, `${c.model} is an MQTT model: it has no ${field}`);
    } else if (transport === 'modbus-rtu' || transport === 'rf-bridge') {
      const needs = transport === 'modbus-rtu' ? 'address' : 'rf';
      if (bus === undefined) report('bus', `required for ${c.model} (a ${transport} bus id from serial)`);
      else {
        const protocol = ctx.buses.get(bus);
        if (protocol === undefined) report('bus', `bus ${bus} is not configured in serial${ctx.buses.size > 0 ? ` (configured: ${[...ctx.buses.keys()].join(', ')})` : ''}`);
        else if (protocol !== transport) report('bus', `bus ${bus} is a ${protocol} bus; ${c.model} needs a ${transport} bus`);
      }
      if (c.secret !== undefined) report('secret', `${c.model} is a serial model: it has no secret`);
      if (transport === 'modbus-rtu') {
        if (c.rf !== undefined) report('rf', `${c.model} is a Modbus model: it has no rf id`);
        if (c.address === undefined) report('address', `required for ${c.model} (Modbus slave address 1–247)`);
        else if (!/^\d{1,3}$/.test(c.address) || Number(c.address) < 1 || Number(c.address) > 247) report('address', 'Modbus slave address must be a whole number 1–247');
        else address = Number(c.address);
      } else {
        if (c.address !== undefined) report('address', `${c.model} is an RF model: it has no Modbus address`);
        if (c.rf === undefined) report('rf', `required for ${c.model} (EV1527 id, 5 hex digits)`);
        else if (!/^[0-9A-Fa-f]{5}$/.test(c.rf)) report('rf', 'EV1527 id must be 5 hex digits, e.g. 5A3C1');
        else rf = c.rf.toUpperCase();
      }
      const keyValue = needs === 'address' ? address : rf;
      if (bus !== undefined && keyValue !== undefined && id !== undefined) {
        const index = needs === 'address' ? addresses : rfs;
        const key = `${bus}\u0000${keyValue}`;
        const first = index.get(key);
        if (first) report(needs, `bus ${bus} ${needs} ${keyValue} is already used by ${first.id} (${where(first.row)})`);
        else index.set(key, { row, id });
      }
    }

    let heartbeatMs: number | undefined;
    if (c.heartbeat !== undefined) {
      heartbeatMs = parseDuration(c.heartbeat);
      if (heartbeatMs === undefined || heartbeatMs < 1000) {
        report('heartbeat', 'must be a duration of at least 1s: 30s, 15m, 1h, 35d');
        heartbeatMs = undefined;
      }
    }

    const name = c.resident_name;
    const phone = c.resident_phone;
    // Messages about residents' data describe it and never repeat it (SPEC §8).
    if (name !== undefined && phone === undefined) report('resident_phone', 'required with resident_name');
    if (phone !== undefined && name === undefined) report('resident_name', 'required with resident_phone');
    if (name !== undefined && (name.length > 64 || CONTROL.test(name))) report('resident_name', 'at most 64 characters on one line');
    if (phone !== undefined && !PHONE.test(phone)) report('resident_phone', 'not a phone number (digits, spaces, + - ( ), at most 32)');

    if (issues.length > before) continue;
    const candidate = {
      id,
      model: c.model,
      place: { grid: c.grid, building: c.building ?? '', room: c.room ?? '' },
      ...(secretHash !== undefined ? { secretHash } : {}),
      ...(bus !== undefined ? { bus } : {}),
      ...(address !== undefined ? { address } : {}),
      ...(rf !== undefined ? { rf } : {}),
      ...(heartbeatMs !== undefined ? { heartbeatMs } : {}),
      ...(name !== undefined && phone !== undefined ? { resident: { name, phone } } : {}),
    };
    // The checks above are meant to be complete; this is the guard that they stay so.
    const parsed = DeviceRecordSchema.safeParse(candidate);
    if (!parsed.success) {
      for (const issue of parsed.error.issues) report(columnOf(issue.path), issue.message);
      continue;
    }
    valid.push({ source: row, record: parsed.data, ...(plainSecret !== undefined ? { plainSecret } : {}) });
  }
  return { rows: valid, issues };
}

function columnOf(path: readonly PropertyKey[]): DeviceColumn | undefined {
  const [head, sub] = path;
  if (head === 'place') return sub === 'grid' || sub === 'building' || sub === 'room' ? sub : undefined;
  if (head === 'secretHash') return 'secret';
  if (head === 'heartbeatMs') return 'heartbeat';
  if (head === 'resident') return sub === 'phone' ? 'resident_phone' : 'resident_name';
  return typeof head === 'string' ? (head as DeviceColumn) : undefined;
}

function where(row: SourceRow): string {
  if (row.line !== undefined) return `${row.file}:${row.line}`;
  return `devices[${row.index ?? '?'}]`;
}

function issueAt(row: SourceRow, field: DeviceColumn | undefined, message: string): ConfigIssue {
  const base = { code: 'REG_ERR_ROW' as const, file: row.file, message, ...(row.cells.id !== undefined && row.line !== undefined ? { deviceId: row.cells.id } : {}) };
  if (row.index !== undefined) return { ...base, path: `devices[${row.index}]${field ? `.${field}` : ''}` };
  return { ...base, ...(row.line !== undefined ? { line: row.line } : {}), ...(field ? { field } : {}) };
}

// ---- reading the source --------------------------------------------------------------------

export interface DeviceSource {
  readonly rows: readonly SourceRow[];
  readonly issues: readonly ConfigIssue[];
  /** The CSV file, when the registry is one (absent for an inline list). */
  readonly file?: string;
  readonly bom?: boolean;
}

export interface SourceNames {
  /** How to name the config file in messages about inline rows. */
  readonly configFile: string;
  /** How to name a registry file in messages; default: the path itself. */
  readonly display?: (path: string) => string;
}

/** Reads the rows of a registry CSV file. A missing file is an error: a gateway with no devices is a mistake. */
export async function readDeviceCsvFile(path: string, display: (path: string) => string = (p) => p): Promise<DeviceSource> {
  const shown = display(path);
  let data: Buffer;
  try {
    data = await readFile(path);
  } catch (err) {
    return { rows: [], file: path, issues: [{ code: 'REG_ERR_READ', file: shown, message: `cannot read: ${describeFsError(err)}` }] };
  }
  const parsed = parseDeviceCsv(data, shown);
  return { rows: parsed.rows.map((r) => ({ file: shown, line: r.line, cells: r.cells })), issues: parsed.issues, file: path, bom: parsed.bom };
}

/** The rows of `config.devices`: the CSV file it names, or its inline list. */
export async function readDeviceSource(devices: GatewayConfig['devices'], names: SourceNames): Promise<DeviceSource> {
  if (typeof devices === 'string') return readDeviceCsvFile(devices, names.display);
  return { rows: devices.map((cells, index) => ({ file: names.configFile, index, cells: compact(cells) })), issues: [] };
}

function compact(cells: Readonly<Record<string, string | undefined>>): DeviceCells {
  const out: DeviceCells = {};
  for (const [k, v] of Object.entries(cells)) if (v !== undefined && v.trim() !== '') out[k as DeviceColumn] = v.trim();
  return out;
}

// ---- the registry --------------------------------------------------------------------------

export interface DeviceRegistry {
  readonly size: number;
  get(id: string): DeviceRecord | undefined;
  /** The Modbus meter at `address` on `bus`. */
  byAddress(bus: string, address: number): DeviceRecord | undefined;
  /** The RF pager with EV1527 id `rf` (any case) heard on `bus`. */
  byRf(bus: string, rf: string): DeviceRecord | undefined;
  /** Every device, in registry order. */
  list(): readonly DeviceRecord[];
  /**
   * Checks an MQTT CONNECT password against the device's stored scrypt hash (SPEC §3).
   * False for an unknown device and for a device without a secret (serial models).
   */
  verify(id: string, password: string): Promise<boolean>;
}

/** Builds the indexes over records that are already valid and hashed (see {@link loadRegistry}). */
export function createRegistry(records: readonly DeviceRecord[]): DeviceRegistry {
  const frozen = Object.freeze(records.map((r) => deepFreeze({ ...r })));
  const byId = new Map<string, DeviceRecord>();
  const byAddress = new Map<string, DeviceRecord>();
  const byRf = new Map<string, DeviceRecord>();
  for (const r of frozen) {
    if (byId.has(r.id)) throw new Error(`duplicate device id ${r.id}`);
    byId.set(r.id, r);
    if (r.bus !== undefined && r.address !== undefined) byAddress.set(`${r.bus}\u0000${r.address}`, r);
    if (r.bus !== undefined && r.rf !== undefined) byRf.set(`${r.bus}\u0000${r.rf}`, r);
  }
  return {
    size: frozen.length,
    get: (id) => byId.get(id),
    byAddress: (bus, address) => byAddress.get(`${bus}\u0000${address}`),
    byRf: (bus, rf) => byRf.get(`${bus}\u0000${rf.toUpperCase()}`),
    list: () => frozen,
    async verify(id, password) {
      const hash = byId.get(id)?.secretHash;
      return hash === undefined ? false : verifySecret(password, hash);
    },
  };
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

export interface LoadRegistryOptions extends SourceNames {
  /** Hash function for plain secrets found at load; tests pass a cheaper one. */
  readonly hash?: (secret: string) => Promise<string>;
}

export type RegistryLoad =
  | { readonly ok: true; readonly registry: DeviceRegistry; readonly warnings: readonly ConfigIssue[] }
  | { readonly ok: false; readonly issues: readonly ConfigIssue[] };

/**
 * Reads and validates the whole registry and builds it; every bad row is reported at once.
 *
 * A registry *file* that still holds plain secrets (an installer edited it by hand) is not
 * refused — refusing would take every device of the site offline for one hand-edited line.
 * The plain secrets are hashed in memory only and a warning tells the operator to run
 * `gridedge devices import` on the file, which rewrites it with hashes. Plain secrets of an
 * inline list live in gridedge.yaml (normally as `${VAR}`) and are hashed in memory silently.
 */
export async function loadRegistry(devices: GatewayConfig['devices'], ctx: RegistryContext, options: LoadRegistryOptions): Promise<RegistryLoad> {
  const source = await readDeviceSource(devices, options);
  const checked = validateDeviceRows(source.rows, ctx);
  const issues = [...source.issues, ...checked.issues];
  if (issues.length > 0) return { ok: false, issues };

  const hash = options.hash ?? ((s: string) => hashSecret(s));
  const records = await Promise.all(
    checked.rows.map(async (r) => (r.plainSecret === undefined ? r.record : { ...r.record, secretHash: await hash(r.plainSecret) })),
  );
  const warnings: ConfigIssue[] = [];
  const plain = source.file === undefined ? [] : plainSecretRows(checked.rows);
  if (plain.length > 0) warnings.push(plainSecretWarning(plain, source.file ?? ''));
  return { ok: true, registry: createRegistry(records), warnings };
}

export function plainSecretRows(rows: readonly ValidRow[]): ValidRow[] {
  return rows.filter((r) => r.plainSecret !== undefined);
}

/** The warning for a registry file that holds plain secrets; names lines, never the secrets. */
export function plainSecretWarning(rows: readonly ValidRow[], registryPath: string): ConfigIssue {
  const first = rows[0];
  const lines = rows.map((r) => r.source.line).filter((l) => l !== undefined);
  const shownLines = lines.length > 10 ? `${lines.slice(0, 10).join(', ')}, …` : lines.join(', ');
  return {
    code: 'REG_ERR_ROW',
    file: first?.source.file ?? registryPath,
    field: 'secret',
    message:
      `${rows.length} device${rows.length > 1 ? 's have' : ' has'} a plain secret (line${lines.length > 1 ? 's' : ''} ${shownLines}); ` +
      `hashed in memory only — run \`gridedge devices import ${registryPath}\` to replace them with scrypt hashes on disk`,
  };
}

/** Device count per model, for summaries. */
export function countByModel(records: Iterable<Pick<DeviceRecord, 'model'>>): Map<string, number> {
  const counts = new Map<string, number>();
  for (const r of records) counts.set(r.model, (counts.get(r.model) ?? 0) + 1);
  return counts;
}
