import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openStore, type Store } from '../../ingest/store/index.js';
import { spawnProcess, type SpawnedProcess } from '../helpers/process.js';
import { createPtyPair, type PtyPair } from '../helpers/pty.js';
import { makeTempDir } from '../helpers/tmp.js';

/**
 * The example site of 东花市街道 as a user runs it, for end-to-end tests: its gridedge.yaml with
 * the serial buses on real pseudo-terminal pairs, MQTT on a free port, data in a temp dir; then
 * `gridedge start` and `gridedge simulate` as child processes. Everything is cleaned up by
 * tests/helpers/cleanup.ts (call cleanupAll in afterAll).
 */
export const EXAMPLE = join(import.meta.dirname, '../../examples/donghuashi');
export const BIN = join(import.meta.dirname, '../../bin/gridedge.js');

/**
 * SPEC §10 compressed to 5 s: the short-circuit bit with a line-temperature rise in room B1-3 of
 * building 7, the room's smoke detector 2 s later, then the SOS of the resident of 5-302.
 */
export const COMPRESSED_SCENARIO = `
name: SPEC §10, compressed
steps:
  - { at: 0s, meter: { bus: rs485-1, address: 1 }, sample: { metrics: { voltage_v: 221.6, current_a: 3.1, t1_c: 26.5 }, state: { short_circuit: false } } }
  - { at: 0s, device: SMK-0701-B13, send: { events: [heartbeat] } }
  - { at: 2s, meter: { bus: rs485-1, address: 1 }, sample: { metrics: { current_a: 38.6, t1_c: 31.2 }, state: { short_circuit: true } } }
  - { at: 3s, meter: { bus: rs485-1, address: 1 }, sample: { metrics: { t1_c: 41.5 } } }
  - { at: 4s, device: SMK-0701-B13, send: { events: [fire_alarm] } }
  - { at: 5s, rf: { bus: rf-1, id: 5A3C1, key: sos } }
`;

export interface ExampleSite {
  readonly dir: string;
  readonly configFile: string;
  startGateway(args?: readonly string[]): Promise<{ process: SpawnedProcess; port: number; httpPort: number }>;
  /** Plays a scenario (YAML text) with the site's MQTT devices and serial simulators; resolves with its exit. */
  simulate(port: number, scenario: string): Promise<SpawnedProcess>;
  /** Opens the gateway's store (after the gateway stopped). */
  openStore(): Store;
}

export async function prepareExampleSite(options: { extraYaml?: string; escalation?: string } = {}): Promise<ExampleSite> {
  const dir = (await makeTempDir('gridedge-e2e-')).path;
  const [rs1, rs2, rf] = [await createPtyPair(), await createPtyPair(), await createPtyPair()] as [PtyPair, PtyPair, PtyPair];
  let config = readFileSync(join(EXAMPLE, 'gridedge.yaml'), 'utf8')
    .replace('/dev/ttyUSB0', rs1.a)
    .replace('/dev/ttyUSB2', rs2.a)
    .replace('/dev/ttyUSB1', rf.a)
    .replace(/port: 1883\b/, 'port: 0')
    .replace('dataDir: ./data', `dataDir: ${join(dir, 'data')}`)
    .replace('devices: ./devices.csv', `devices: ${join(EXAMPLE, 'devices.csv')}`)
    .replace('http: { host: 127.0.0.1, port: 8080 }', 'http: { host: 127.0.0.1, port: 0 }');
  if (options.escalation !== undefined) config = config.replace(/^escalation:.*$/m, `escalation: ${options.escalation}`);
  if (options.extraYaml !== undefined) config += `\n${options.extraYaml}\n`;
  const configFile = join(dir, 'gridedge.yaml');
  writeFileSync(configFile, config);

  return {
    dir,
    configFile,
    async startGateway(args = []) {
      const process_ = await spawnProcess(process.execPath, [BIN, 'start', '-c', configFile, ...args], { name: 'gridedge start' });
      const line = await process_.waitForLine(/MQTT on .*:(\d+), HTTP on .*:(\d+),/, 30_000);
      const m = /MQTT on .*:(\d+), HTTP on .*:(\d+),/.exec(line);
      return { process: process_, port: Number(m?.[1]), httpPort: Number(m?.[2]) };
    },
    async simulate(port, scenario) {
      const file = join(dir, `scenario-${Date.now()}.yaml`);
      writeFileSync(file, scenario);
      return spawnProcess(
        process.execPath,
        [BIN, 'simulate', '--url', `mqtt://127.0.0.1:${port}`, '--site', EXAMPLE, '--scenario', file,
          '--serial', `rs485-1=${rs1.b}`, '--serial', `rs485-2=${rs2.b}`, '--serial', `rf-1=${rf.b}`],
        { name: 'gridedge simulate' },
      );
    },
    openStore: () => openStore({ path: join(dir, 'data', 'gridedge.db'), clock: Date.now, logger: { info() {}, warn() {}, error() {} } }),
  };
}
