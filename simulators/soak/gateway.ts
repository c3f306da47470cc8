import { performance } from 'node:perf_hooks';
import { startChild, type Child } from './children.js';

/** `gridedge start` as users run it, so that it can be kill -9'd; resolves once MQTT listens. */

export interface SoakGateway {
  readonly child: Child;
  readonly url: string;
  readonly httpUrl: string;
  /** Spawn to the "MQTT on" line, ms: WAL recovery, rule replay and the uplink resend start included. */
  readonly startMs: number;
}

const STARTED = /^gridedge \S+: MQTT on [^\s,]+:(\d+), HTTP on [^\s,]+:(\d+),/;

export async function startSoakGateway(bin: string, configPath: string, cwd: string): Promise<SoakGateway> {
  const t0 = performance.now();
  const child = await startChild(process.execPath, [bin, 'start', '-c', configPath, '--log-level', 'warn'], { name: 'gridedge start', cwd });
  let line: string;
  try {
    // Generous: the machine is shared, and a restart recovers the WAL and replays the rules.
    line = await child.waitForLine(STARTED, 60_000);
  } catch (err) {
    await child.stop(2_000);
    throw err;
  }
  const startMs = Math.round(performance.now() - t0);
  const m = STARTED.exec(line);
  return { child, url: `mqtt://127.0.0.1:${m?.[1]}`, httpUrl: `http://127.0.0.1:${m?.[2]}`, startMs };
}
