import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'csv-stringify/sync';
import { stringify as toYaml } from 'yaml';
import type { GatewayConfigInput } from '../../../gateway/config/schema.js';
import { DEVICE_COLUMNS } from '../../../gateway/registry/columns.js';
import { hashSecret } from '../../../gateway/registry/secrets.js';
import { toLoadDevices, type GatewaySite, type TestDevice } from '../../helpers/gateway.js';
import { runCommand } from '../../helpers/process.js';
import { makeTempDir } from '../../helpers/tmp.js';

/*
 * A gateway site for the security tests: two grids (A and B) of one community, devices in both,
 * residents with a name and a phone, API users with plain tokens, optionally a metrics token, an
 * uplink (with TLS) and MQTT operators. Shaped like tests/helpers/gateway.ts writeGatewaySite (its
 * result goes to startGatewayInProcess / spawnGateway), which knows one grid and no users.
 */

export const GRID_A = '110101013001002';
export const GRID_B = '110101013001003';

export interface SecureDevice extends TestDevice {
  readonly grid: string;
  readonly resident?: { readonly name: string; readonly phone: string };
}

export interface SecureUser {
  readonly name: string;
  readonly role: 'admin' | 'dispatcher' | 'grid_worker';
  readonly grids?: readonly string[];
  readonly token: string;
}

export interface SecureSiteOptions {
  readonly devices: readonly SecureDevice[];
  readonly users: readonly SecureUser[];
  readonly metricsToken?: string;
  readonly operators?: readonly { username: string; password: string }[];
  readonly uplink?: NonNullable<GatewayConfigInput['uplink']>;
  readonly mqttTls?: { port: number; cert: string; key: string };
  readonly gatewayId?: string;
}

export async function writeSecureSite(opts: SecureSiteOptions): Promise<GatewaySite> {
  const tmp = await makeTempDir('gridedge-sec-');
  const dir = tmp.path;
  const configPath = join(dir, 'gridedge.yaml');
  const dataDir = join(dir, 'data');
  const hashes = await Promise.all(opts.devices.map((d) => hashSecret(d.secret)));
  const rows = opts.devices.map((d, i) => {
    const cells: Record<string, string> = {
      id: d.id,
      model: d.model,
      grid: d.grid,
      building: d.building,
      room: d.room,
      secret: hashes[i] as string,
      resident_name: d.resident?.name ?? '',
      resident_phone: d.resident?.phone ?? '',
    };
    return DEVICE_COLUMNS.map((c) => cells[c] ?? '');
  });
  await writeFile(join(dir, 'devices.csv'), stringify([[...DEVICE_COLUMNS], ...rows]), 'utf8');

  const writeConfig = async (port: number): Promise<void> => {
    const config = {
      gateway: { id: opts.gatewayId ?? 'gw-sec', dataDir: './data' },
      site: {
        district: '110101',
        street: { code: '110101013', name: '东花市街道' },
        communities: [{ code: '001', name: '北里社区' }],
        grids: [
          { code: GRID_A, name: '第2网格' },
          { code: GRID_B, name: '第3网格' },
        ],
      },
      mqtt: {
        listen: { host: '127.0.0.1', port },
        ...(opts.operators ? { operators: [...opts.operators] } : {}),
        ...(opts.mqttTls ? { tls: { host: '127.0.0.1', ...opts.mqttTls } } : {}),
      },
      devices: './devices.csv',
      sinks: [{ type: 'embedded' }],
      http: { host: '127.0.0.1', port: 0, ...(opts.metricsToken !== undefined ? { metricsToken: opts.metricsToken } : {}) },
      users: opts.users.map((u) => ({ name: u.name, role: u.role, token: u.token, ...(u.grids ? { grids: [...u.grids] } : {}) })),
      ...(opts.uplink ? { uplink: opts.uplink } : {}),
    } satisfies GatewayConfigInput;
    await writeFile(configPath, `# written by tests/integration/security/site.ts\n${toYaml(config)}`, 'utf8');
  };
  await writeConfig(0);
  return { dir, configPath, dataDir, dbPath: join(dataDir, 'gridedge.db'), devices: opts.devices, loadDevices: toLoadDevices(opts.devices), setPort: writeConfig };
}

/** A CA, a server certificate for 127.0.0.1 / localhost and a client certificate, all signed by the CA; and an unrelated CA. PEM file paths. */
export interface TestPki {
  readonly dir: string;
  readonly ca: string;
  readonly serverCert: string;
  readonly serverKey: string;
  readonly clientCert: string;
  readonly clientKey: string;
  /** A CA that signed nothing here. */
  readonly otherCa: string;
}

/** Made with the openssl CLI in a temp dir (removed after the test file). EC P-256: quick to make. */
export async function makePki(): Promise<TestPki> {
  const tmp = await makeTempDir('gridedge-pki-');
  const d = tmp.path;
  const p = (n: string): string => join(d, n);
  const ssl = (args: string[]): Promise<unknown> => runCommand('openssl', args);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  for (const name of ['ca', 'other-ca']) {
    await ssl(['req', '-x509', ...ec, '-keyout', p(`${name}.key`), '-out', p(`${name}.pem`), '-days', '2', '-subj', `/CN=gridedge test ${name}`]);
  }
  const sign = async (name: string, subject: string, ext: string): Promise<void> => {
    await ssl(['req', ...ec, '-keyout', p(`${name}.key`), '-out', p(`${name}.csr`), '-subj', subject]);
    await writeFile(p(`${name}.ext`), ext);
    await ssl(['x509', '-req', '-in', p(`${name}.csr`), '-CA', p('ca.pem'), '-CAkey', p('ca.key'), '-CAcreateserial', '-out', p(`${name}.pem`), '-days', '2', '-extfile', p(`${name}.ext`)]);
  };
  await sign('server', '/CN=127.0.0.1', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  await sign('client', '/CN=gw-sec', 'extendedKeyUsage=clientAuth\n');
  return {
    dir: d,
    ca: p('ca.pem'),
    serverCert: p('server.pem'),
    serverKey: p('server.key'),
    clientCert: p('client.pem'),
    clientKey: p('client.key'),
    otherCa: p('other-ca.pem'),
  };
}
