import { existsSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { beforeAll, describe, expect, it } from 'vitest';
import { runLoad, type LoadSummary } from '../../simulators/load.js';
import { startInfluxd, type Influxd } from '../helpers/influxd.js';
import {
  ROOT,
  influxKeys,
  makeDevices,
  missing,
  sleep,
  spawnGateway,
  storedKeys,
  waitUntil,
  writeGatewaySite,
  type GatewayProcess,
  type GatewaySite,
} from '../helpers/gateway.js';

// SPEC §3: "a QoS 1 publish is PUBACKed only after its reading is durably stored". The gateway
// runs as users run it (`node bin/gridedge.js start`), takes QoS 1 load from the load generator,
// and is kill -9'd at a random moment. Restarted on the same data directory it must hold every
// reading whose PUBACK a device received, and deliver them to InfluxDB. Three rounds.
// (kill -9 keeps the OS page cache: this checks the order PUBACK-after-commit, not fsync.)

const DB = 'gridedge';
const DEVICES = makeDevices('CRASH', 15);
const ROUNDS = 3;
const RATE = 400;
const LOAD_MS = 3_000;

let influx: Influxd;
let site: GatewaySite;

beforeAll(async () => {
  if (!existsSync(join(ROOT, 'dist/gateway/cli/main.js'))) throw new Error('dist/ is missing: run `npm run build` before this test');
  influx = await startInfluxd();
  site = await writeGatewaySite({
    devices: DEVICES,
    rateLimit: { perSecond: 1_000, burst: 1_000 },
    sinks: [{ type: 'embedded' }, { type: 'influxdb1', url: influx.url, database: DB, flushInterval: '200ms' }],
  });
}, 60_000);

/** The sink's durable cursor has reached the last committed reading (read-only, next to the running gateway). */
function sinkCaughtUp(dbPath: string): boolean {
  const db = new Database(dbPath, { readonly: true, fileMustExist: true });
  try {
    const last = db.prepare<[], number>("SELECT seq FROM sqlite_sequence WHERE name = 'readings'").pluck().get() ?? 0;
    const cursor = db.prepare<[], number>("SELECT MIN(cursor) FROM consumers WHERE name LIKE 'sink:%'").pluck().get() ?? -1;
    return cursor === last;
  } finally {
    db.close();
  }
}

describe('kill -9 of the gateway under QoS 1 load', () => {
  it(`keeps every PUBACKed reading in the store and delivers it to InfluxDB (${ROUNDS} rounds)`, async () => {
    const acked = new Set<string>();
    for (let round = 1; round <= ROUNDS; round++) {
      const gw: GatewayProcess = await spawnGateway(site);
      const killAfter = 300 + Math.floor(Math.random() * (LOAD_MS - 600));
      const load: Promise<LoadSummary> = runLoad({ url: gw.url, devices: site.loadDevices, ratePerSecond: RATE, durationMs: LOAD_MS, qos: 1, drainMs: 1_000 });
      await sleep(killAfter);
      await gw.kill9();
      const status = await gw.proc.waitForExit(1_000);
      const summary = await load;
      for (const k of summary.ledger.ackedKeys()) acked.add(k);

      expect(status.signal).toBe('SIGKILL');
      expect(summary.acked).toBeGreaterThan(0);
      // Messages were still being sent when it died: the kill landed under load.
      expect(summary.unacked).toBeGreaterThan(0);

      const again = await spawnGateway(site);
      await waitUntil('the restarted gateway to drain its sink', () => sinkCaughtUp(site.dbPath), 40_000, 100);
      await again.stop();
      expect(again.proc.exited()).toBe(true);

      const stored = storedKeys(site.dbPath);
      const inInflux = await influxKeys(influx, DB);
      console.log(
        `round ${round}: killed after ${killAfter} ms; acked ${summary.acked}, unacked ${summary.unacked}; ` +
          `store ${stored.size} readings, InfluxDB ${inInflux.size} points, PUBACKed so far ${acked.size}`,
      );
      expect(missing(acked, stored)).toEqual([]);
      expect(missing(acked, inInflux)).toEqual([]);
      // Nothing the store holds is missing downstream either (at least once).
      expect(missing(stored, inInflux)).toEqual([]);
    }
  }, 120_000);
});
