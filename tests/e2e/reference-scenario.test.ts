import mqtt from 'mqtt';
import { afterAll, describe, expect, it } from 'vitest';
import { cleanupAll } from '../helpers/cleanup.js';
import { startMosquitto } from '../helpers/mosquitto.js';
import { COMPRESSED_SCENARIO, prepareExampleSite } from './example-site.js';

// SPEC §10 end to end: the gateway and the simulated community as two processes, the Modbus
// meter and the RF bridge on real pseudo-terminals, a real Mosquitto as the city's broker. The
// 60 s escalation deadline is configured as 3 s — the accelerated clock of this test — and the
// scenario's 20 s between short circuit and smoke alarm is compressed to 2 s.
const PREFIX = 'city/110101013';
const GRID = '110101013001002';
const ESCALATE_S = 3;

const SCENARIO = COMPRESSED_SCENARIO;

interface Seen {
  topic: string;
  incident: { id: string; type: string; severity: string; status: string; grid: string; level: number; version: number; place: { building: string; room: string }; openedAt: number };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until<T>(what: string, probe: () => T | undefined, timeoutMs = 20_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

describe('the reference scenario (SPEC §10)', () => {
  afterAll(async () => {
    await cleanupAll();
  });

  it('raises the incidents, escalates the unacknowledged SOS, stops on ack, all visible upstream in order', async () => {
    const upstream = await startMosquitto();
    const city = await mqtt.connectAsync(upstream.url, { clientId: 'city-platform', protocolVersion: 4 });
    const seen: Seen[] = [];
    const presence: string[] = [];
    city.on('message', (topic, payload) => {
      if (topic.endsWith('/status')) presence.push(payload.toString());
      else if (topic.includes('/incidents/')) seen.push({ topic, incident: JSON.parse(payload.toString()) as Seen['incident'] });
    });
    await city.subscribeAsync(`${PREFIX}/#`, { qos: 1 });

    const site = await prepareExampleSite({
      escalation: `{ critical: ${ESCALATE_S}s, major: 5m, minor: 30m, info: none }`,
      extraYaml: `uplink: { url: "${upstream.url}", prefix: ${PREFIX} }`,
    });
    const gateway = await site.startGateway();
    const sim = await site.simulate(gateway.port, SCENARIO);
    expect(await sim.waitForExit(60_000), sim.output()).toEqual({ code: 0, signal: null });

    const latest = (type: string) => [...seen].reverse().find((s) => s.incident.type === type)?.incident;
    const shortCircuit = await until('electrical.short_circuit upstream', () => latest('electrical.short_circuit'));
    const fire = await until('fire upstream', () => latest('fire'));
    const confirmed = await until('fire.confirmed upstream', () => latest('fire.confirmed'));
    const sos = await until('sos upstream', () => latest('sos'));
    for (const i of [shortCircuit, fire, confirmed, sos]) expect(i).toMatchObject({ severity: 'critical', grid: GRID });
    expect(shortCircuit.place).toMatchObject({ building: '7', room: 'B1-3' });
    expect(fire.place).toMatchObject({ building: '7', room: 'B1-3' });
    expect(confirmed.place).toMatchObject({ building: '7', room: 'B1-3' });
    expect(sos.place).toMatchObject({ building: '5', room: '302' });
    expect(presence).toContain('online');

    // Unacknowledged past its deadline, the SOS goes up to the community (level 1)…
    const escalated = await until('the sos escalated to level 1', () => seen.find((s) => s.incident.id === sos.id && s.incident.level === 1)?.incident, 15_000);
    expect(escalated.status).toBe('open');
    // …a grid worker acknowledges it (through the city platform's command topic)…
    await city.publishAsync(`${PREFIX}/gateways/gw-dhs-07/cmd`, JSON.stringify({ cmd: 'ack', incident: sos.id, actor: 'wang', note: '到了' }), { qos: 1 });
    const acked = await until('the sos acknowledged upstream', () => seen.find((s) => s.incident.id === sos.id && s.incident.status === 'acknowledged')?.incident);
    // …and the escalation stops: nothing more for it over two more deadlines.
    await sleep(2 * ESCALATE_S * 1000 + 500);
    const after = seen.filter((s) => s.incident.id === sos.id && s.incident.version > acked.version);
    expect(after).toEqual([]);
    expect(latest('sos')?.level).toBe(acked.level);

    // Every change upstream, in order per incident: versions only go up.
    const byId = new Map<string, number[]>();
    for (const s of seen) byId.set(s.incident.id, [...(byId.get(s.incident.id) ?? []), s.incident.version]);
    for (const [id, versions] of byId) expect(versions, id).toEqual([...versions].sort((a, b) => a - b));
    // Topics follow SPEC §7.
    for (const s of seen) expect(s.topic).toBe(`${PREFIX}/${s.incident.grid}/incidents/${s.incident.id}`);

    // Prometheus (SPEC §8 /metrics): every critical incident's first version reached the city's
    // broker is in the alarm-to-uplink histogram; the open incidents are counted by severity.
    const metrics = await (await fetch(`http://127.0.0.1:${gateway.httpPort}/metrics`)).text();
    const value = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(metrics)?.[1]);
    expect(value('gridedge_alarm_to_uplink_seconds_count')).toBeGreaterThanOrEqual(4);
    expect(value('gridedge_incidents_open\\{severity="critical"\\}')).toBeGreaterThanOrEqual(4);
    expect(value('gridedge_uplink_connected')).toBe(1);

    expect(await gateway.process.stop(10_000)).toMatchObject({ code: 0 });
    await city.endAsync();

    // SPEC §10 asks for the incident within one poll interval plus 100 ms of the bit being set: the
    // figure is printed here and measured by `npm run bench:alarm`, never asserted as a timing.
    const store = site.openStore();
    try {
      const first = store.queryReadings({ deviceId: 'ELC-0701-B13', limit: 10_000 }).find((r) => r.reading.events.includes('short_circuit'));
      expect(first).toBeDefined();
      const lag = shortCircuit.openedAt - (first?.reading.receivedAt ?? 0);
      console.log(`short circuit: reading → incident ${lag} ms`);
      expect(first?.reading.state.short_circuit).toBe(true);
    } finally {
      await store.close();
    }
  }, 120_000);
});
