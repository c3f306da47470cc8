import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify as toCsv } from 'csv-stringify/sync';
import { stringify as toYaml } from 'yaml';
import { getModel } from '../../devices/catalogue.js';
import type { MqttModel } from '../../devices/model.js';
import type { LoadDevice } from '../load.js';
import { startChild } from './children.js';

/*
 * The soak's site, on real files as an installer makes it: gridedge.yaml (embedded sink, uplink
 * to the city broker, HTTP and MQTT on ports the OS picks) and a device list imported with
 * `gridedge devices import`, so that the registry holds scrypt hashes, as in the field.
 */

export const SOAK_GRID = '110101013001002';
export const SOAK_PREFIX = 'city/110101013';
export type SoakModel = 'smoke-json' | 'smoke-ctw' | 'pager-json';
const MODELS: readonly SoakModel[] = ['smoke-json', 'smoke-ctw', 'pager-json'];

export interface SoakSite {
  readonly dir: string;
  readonly configPath: string;
  readonly dbPath: string;
  readonly incidentsPath: string;
  readonly gatewayId: string;
  readonly devices: readonly LoadDevice[];
}

function mqttModel(id: SoakModel): MqttModel {
  const m = getModel(id);
  if (m?.transport !== 'mqtt') throw new Error(`${id} is not an MQTT model`);
  return m;
}

/** `n` devices cycling through the three MQTT models, each in its own room (no fire.confirmed across devices). */
export function soakDevices(n: number): LoadDevice[] {
  return Array.from({ length: n }, (_, i) => {
    const id = `K9-${String(i).padStart(3, '0')}`;
    return { id, secret: `soak-secret-${id}`, model: mqttModel(MODELS[i % MODELS.length] as SoakModel) };
  });
}

export async function writeSoakSite(opts: { dir: string; bin: string; devices: readonly LoadDevice[]; upstreamUrl: string; gatewayId?: string }): Promise<SoakSite> {
  const gatewayId = opts.gatewayId ?? 'gw-kill9';
  const configPath = join(opts.dir, 'gridedge.yaml');
  await mkdir(join(opts.dir, 'data'), { recursive: true });
  const config = {
    gateway: { id: gatewayId, dataDir: './data' },
    site: {
      district: '110101',
      street: { code: '110101013', name: '东花市街道' },
      communities: [{ code: '001', name: '北里社区' }],
      grids: [{ code: SOAK_GRID, name: '第2网格' }],
    },
    // Far above the load: a refused telemetry message is still PUBACKed (docs/SPEC-NOTES.md), and
    // this run is about crashes, not the rate limiter.
    mqtt: { listen: { host: '127.0.0.1', port: 0 }, rateLimit: { perSecond: 10_000, burst: 10_000 } },
    devices: './devices.csv',
    sinks: [{ type: 'embedded' }],
    uplink: { url: opts.upstreamUrl, prefix: SOAK_PREFIX },
    http: { host: '127.0.0.1', port: 0 },
  };
  await writeFile(configPath, `# written by simulators/soak/site.ts\n${toYaml(config)}`, 'utf8');

  const header = ['id', 'model', 'grid', 'building', 'room', 'secret', 'bus', 'address', 'rf', 'heartbeat', 'resident_name', 'resident_phone'];
  const rows = opts.devices.map((d, i) => [d.id, d.model.id, SOAK_GRID, '7', `R${100 + i}`, d.secret, '', '', '', '', '', '']);
  const newFile = join(opts.dir, 'new-devices.csv');
  await writeFile(newFile, toCsv([header, ...rows]), 'utf8');
  const importer = await startChild(process.execPath, [opts.bin, 'devices', 'import', newFile, '-c', configPath], { name: 'gridedge devices import', cwd: opts.dir });
  if ((await importer.waitForExit(60_000)) !== 0) throw new Error(`gridedge devices import failed:\n${importer.output()}`);
  return { dir: opts.dir, configPath, dbPath: join(opts.dir, 'data/gridedge.db'), incidentsPath: join(opts.dir, 'data/incidents.db'), gatewayId, devices: opts.devices };
}
