import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { parse } from 'csv-parse/sync';
import { getModel } from '../devices/catalogue.js';
import type { MqttModel } from '../devices/model.js';
import type { LoadDevice } from './load.js';

/*
 * A site's device list as the simulators need it: who the devices are, how they are reached, and
 * (for MQTT devices) the password to connect with. The registry (gateway/registry) is the real
 * validator; this reader is deliberately minimal — simulators may not import gateway/ — and only
 * refuses what it cannot work with.
 *
 * Secrets: a registry normally holds scrypt hashes, which cannot be turned back into passwords.
 * A row with a plain secret is used as it is; otherwise the demo rule of the example site
 * (scripts/make-example-site.mjs, examples/donghuashi/README.md): `dhs-demo-<id>`. DEMO ONLY —
 * it works for the example site, and for nothing else.
 */

export const DEMO_SECRET_PREFIX = 'dhs-demo-';

/** The example site's public password rule for MQTT devices. */
export function demoSecret(deviceId: string): string {
  return `${DEMO_SECRET_PREFIX}${deviceId}`;
}

export interface SiteDevice {
  readonly id: string;
  readonly model: string;
  readonly grid: string;
  readonly building: string;
  readonly room: string;
  readonly bus?: string;
  readonly address?: number;
  readonly rf?: string;
  /** A secret cell that is not a hash, usable as the password. */
  readonly plainSecret?: string;
  /** 1-based CSV line. */
  readonly line?: number;
}

export interface Site {
  /** The CSV read. */
  readonly file: string;
  readonly devices: readonly SiteDevice[];
}

export class SiteError extends Error {
  override readonly name = 'SiteError';
  constructor(
    readonly file: string,
    readonly problems: readonly string[],
  ) {
    super(`${file}: ${problems.join('; ')}`);
  }
}

const REQUIRED = ['id', 'model'] as const;

/** Parses a registry CSV (SPEC §11 header). Rows without an id or a model are errors; other cells are taken as they are. */
export function parseSiteCsv(text: string, file = 'devices.csv'): SiteDevice[] {
  let records: { record: string[]; info: { lines: number } }[];
  try {
    records = parse(text, { bom: true, info: true, relax_column_count: true, skip_empty_lines: true, trim: true }) as unknown as typeof records;
  } catch (err) {
    throw new SiteError(file, [(err as Error).message]);
  }
  const [head, ...rows] = records;
  if (!head) throw new SiteError(file, ['empty file: a header line is required']);
  const columns = head.record.map((c) => c.toLowerCase());
  const missing = REQUIRED.filter((c) => !columns.includes(c));
  if (missing.length > 0) throw new SiteError(file, [`line 1: the header has no ${missing.join(', ')} column`]);
  const col = (row: readonly string[], name: string): string | undefined => {
    const i = columns.indexOf(name);
    const v = i < 0 ? undefined : row[i];
    return v === undefined || v === '' ? undefined : v;
  };

  const problems: string[] = [];
  const devices: SiteDevice[] = [];
  for (const { record, info } of rows) {
    const line = info.lines;
    const id = col(record, 'id');
    const model = col(record, 'model');
    if (id === undefined || model === undefined) {
      problems.push(`line ${line}: ${id === undefined ? 'id' : 'model'} is empty`);
      continue;
    }
    const address = col(record, 'address');
    if (address !== undefined && !/^\d{1,3}$/.test(address)) {
      problems.push(`line ${line} (${id}): address is not a number`);
      continue;
    }
    const secret = col(record, 'secret');
    const bus = col(record, 'bus');
    const rf = col(record, 'rf');
    devices.push({
      id,
      model,
      grid: col(record, 'grid') ?? '',
      building: col(record, 'building') ?? '',
      room: col(record, 'room') ?? '',
      ...(bus === undefined ? {} : { bus }),
      ...(address === undefined ? {} : { address: Number(address) }),
      ...(rf === undefined ? {} : { rf: rf.toUpperCase() }),
      ...(secret === undefined || secret.startsWith('scrypt$') ? {} : { plainSecret: secret }),
      line,
    });
  }
  if (problems.length > 0) throw new SiteError(file, problems);
  return devices;
}

/** `DIR` (its devices.csv) or a CSV file. */
export async function loadSite(path: string): Promise<Site> {
  let file = path;
  try {
    if ((await stat(path)).isDirectory()) file = join(path, 'devices.csv');
  } catch {
    throw new SiteError(path, ['no such file or folder']);
  }
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new SiteError(file, [`cannot read: ${(err as NodeJS.ErrnoException).code ?? String(err)}`]);
  }
  return { file, devices: parseSiteCsv(text, file) };
}

export function mqttModelOf(modelId: string): MqttModel | undefined {
  const model = getModel(modelId);
  return model?.transport === 'mqtt' ? model : undefined;
}

export interface SimulatedDeviceOptions {
  /** Overrides the secret rule (plain cell, else demo rule). */
  readonly secretFor?: (device: SiteDevice) => string;
}

/** The site's MQTT devices with their model and password, ready for createMqttDevice / runLoad. */
export function simulatedMqttDevices(devices: readonly SiteDevice[], options: SimulatedDeviceOptions = {}): LoadDevice[] {
  const out: LoadDevice[] = [];
  for (const d of devices) {
    const model = mqttModelOf(d.model);
    if (!model) continue;
    out.push({ id: d.id, model, secret: options.secretFor?.(d) ?? d.plainSecret ?? demoSecret(d.id) });
  }
  return out;
}

/** Lookups a scenario is checked against. */
export function siteIndex(devices: readonly SiteDevice[]) {
  const byId = new Map(devices.map((d) => [d.id, d]));
  const byAddress = new Map<string, SiteDevice>();
  const byRf = new Map<string, SiteDevice>();
  for (const d of devices) {
    if (d.bus !== undefined && d.address !== undefined) byAddress.set(`${d.bus}\u0000${d.address}`, d);
    if (d.bus !== undefined && d.rf !== undefined) byRf.set(`${d.bus}\u0000${d.rf}`, d);
  }
  return {
    get: (id: string) => byId.get(id),
    meter: (bus: string, address: number) => byAddress.get(`${bus}\u0000${address}`),
    rf: (bus: string, rf: string) => byRf.get(`${bus}\u0000${rf.toUpperCase()}`),
  };
}
export type SiteIndex = ReturnType<typeof siteIndex>;
