import { describe, expect, it } from 'vitest';
import { hashSecret } from '../../../gateway/registry/secrets.js';
import { DEFAULT_BOUNDS, formatSamples, runLoadSoak, soakFigures, type LoadSoakResult } from '../../../simulators/soak/load-soak.js';
import { ROOT } from '../../helpers/gateway.js';
import { registerCleanup } from '../../helpers/cleanup.js';
import { makeTempDir } from '../../helpers/tmp.js';

// Issue 8 item 3 in CI: `gridedge start` (dist/, needs `npm run build`) with 10,000 registered
// devices, all connected, then 60 s of 2,000 telemetry msg/s plus a heartbeat from every device
// every 30 s (333/s) and one alarm a second, QoS 1 with the PUBACK ledger; RSS, CPU and the event
// loop's delay sampled every 5 s. Asserted: nothing PUBACKed is lost, every alarm made exactly one
// incident and none appeared without one, RSS grows at most DEFAULT_BOUNDS.rssGrowthMiB (lowest
// sample of the last third of the soak against the lowest of the first third after a 15 s warm-up:
// the troughs of V8's GC sawtooth), and the event loop never stalled for 2 s beyond the time the
// gateway's main thread waited for a CPU (a generous bound that only a blocked loop trips; the
// delay is a sampled figure on a shared box, reported, not a performance assertion).
// The 10-minute version is `npm run soak:load` (scripts/soak/load.mjs).

const DEVICES = 10_000;
const RATE = 2_000;
const SOAK_S = 60;
const SECRET = 'soak-secret-shared';

describe('load soak: 10k devices, 2k msg/s', () => {
  it(
    'loses nothing and does not grow beyond its bound',
    async () => {
      let pid: number | undefined;
      // A last resort should the test die half-way (runLoadSoak stops its gateway itself).
      const kill = (): void => {
        if (pid !== undefined) process.kill(pid, 'SIGKILL');
      };
      const handle = registerCleanup('load-soak gateway', () => Promise.resolve(kill()), kill);
      let result: LoadSoakResult;
      try {
        result = await runLoadSoak({
          devices: DEVICES,
          ratePerSecond: RATE,
          durationS: SOAK_S,
          heartbeatS: 30,
          alarmsPerMinute: 60,
          warmupS: 15,
          sampleEveryS: 5,
          secret: SECRET,
          secretHash: await hashSecret(SECRET),
          gridedgeBin: `${ROOT}/bin/gridedge.js`,
          onGatewayStarted: (p) => (pid = p),
          workDir: (await makeTempDir('gridedge-soak-load-')).path,
          onPhase: (text) => console.log(`load-soak: ${text}`),
          onSample: (s) => console.log(`load-soak sample: ${formatSamples([s])[1] ?? ''}`),
        });
      } finally {
        pid = undefined;
        handle.unregister();
      }
      console.log(formatSamples(result.samples).join('\n'));
      console.log(soakFigures(result).join('\n'));
      for (const c of result.checks) console.log(`CHECK ${c.ok ? 'ok  ' : 'FAIL'} ${c.name}: ${c.detail}`);

      expect(result.load.connections).toBe(DEVICES);
      expect(result.load.acked).toBeGreaterThan(0);
      expect(result.alarms.acked).toBeGreaterThan(0);
      expect(result.missing).toEqual({ count: 0, sample: [] });
      expect(result.droppedTelemetry).toBe(0);
      expect(result.alarms.missing).toEqual([]);
      expect(result.alarms.duplicated).toEqual([]);
      expect(result.alarms.spurious).toEqual([]);
      expect(result.rss.growthMiB).toBeLessThanOrEqual(DEFAULT_BOUNDS.rssGrowthMiB);
      expect(result.lag.ownMaxMs).toBeLessThan(DEFAULT_BOUNDS.eventLoopMaxMs);
      expect(result.gatewayExit).toBe(0);
      expect(result.checks.filter((c) => !c.ok)).toEqual([]);
    },
    // Connecting 10k devices costs ~2 min of scrypt on 2 idle cores (one scrypt per first CONNECT),
    // then 60 s of soak and the drain: ~3.5 min. The bound is for a box shared with other work,
    // where the connect phase alone took 5–8 min; it bounds a hang, it does not time the gateway.
    900_000,
  );
});
