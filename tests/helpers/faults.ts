import { appendFile, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'csv-stringify/sync';
import { connect, type MqttClient } from 'mqtt';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import { DEVICE_COLUMNS, type DeviceCells } from '../../gateway/registry/columns.js';
import { IncidentSchema, type Incident } from '../../rules/incidents/index.js';
import { registerCleanup } from './cleanup.js';
import { writeGatewaySite, type GatewaySite, type GatewaySiteOptions } from './gateway.js';

/*
 * What the infrastructure-fault tests (tests/integration/faults/) share: a gateway site with the
 * sections writeGatewaySite does not write (uplink, escalation, serial buses and their devices),
 * a seeded random source for outage schedules, a city-side subscriber, and the check of an
 * incident stream against the uplink's contract (docs/UPLINK.md).
 */

export interface FaultSiteOptions extends GatewaySiteOptions {
  /** Top-level gridedge.yaml sections merged over what writeGatewaySite wrote (uplink, escalation, serial). */
  readonly config?: Record<string, unknown>;
  /** Registry rows for serial devices (meters with bus+address, RF pagers with bus+rf). */
  readonly serialDevices?: readonly DeviceCells[];
}

/** writeGatewaySite, then the extra config sections and serial device rows. Do not call setPort on it: that rewrites the config without them. */
export async function writeFaultSite(opts: FaultSiteOptions): Promise<GatewaySite> {
  const site = await writeGatewaySite(opts);
  if (opts.config) {
    const text = await readFile(site.configPath, 'utf8');
    const merged = { ...(parseYaml(text) as Record<string, unknown>), ...opts.config };
    await writeFile(site.configPath, `# written by tests/helpers/faults.ts\n${toYaml(merged)}`, 'utf8');
  }
  if (opts.serialDevices?.length) {
    const rows = opts.serialDevices.map((cells) => DEVICE_COLUMNS.map((c) => cells[c] ?? ''));
    await appendFile(join(site.dir, 'devices.csv'), stringify(rows), 'utf8');
  }
  return site;
}


export interface CityMessage {
  readonly topic: string;
  readonly payload: string;
  readonly retain: boolean;
  /** Redelivered by the broker from the subscriber's own session (MQTT DUP flag). */
  readonly dup: boolean;
  readonly at: number;
}

export interface CitySubscriber {
  readonly client: MqttClient;
  readonly messages: CityMessage[];
  close(): Promise<void>;
}

/**
 * The city platform's side: a persistent session (clean: false, QoS 1) that reconnects every
 * 200 ms, so it misses nothing across restarts of the broker (whose persistence keeps the session).
 */
export async function citySubscriber(url: string, filters: readonly string[], clientId = `city-${Math.random().toString(16).slice(2)}`): Promise<CitySubscriber> {
  const messages: CityMessage[] = [];
  const client = connect(url, { clientId, clean: false, reconnectPeriod: 200, protocolVersion: 4 });
  client.on('error', () => {});
  client.on('message', (topic, payload, packet) => messages.push({ topic, payload: payload.toString('utf8'), retain: packet.retain, dup: packet.dup, at: Date.now() }));
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => client.subscribe([...filters], { qos: 1 }, (err) => (err ? reject(err) : resolve())));
  });
  const close = async (): Promise<void> => {
    handle.unregister();
    await client.endAsync(true);
  };
  const handle = registerCleanup(`city subscriber ${clientId}`, close);
  return { client, messages, close };
}

export interface IncidentStreamReport {
  /** Distinct (id, version) pairs that reached the city. */
  readonly delivered: number;
  /** (id, version) pairs the gateway has that never reached the city. */
  readonly lost: string[];
  /** Messages beyond the first of their (id, version). */
  readonly duplicates: number;
  /** Repeats whose bytes differ from the first copy (must be none). */
  readonly differing: string[];
  /** Incidents whose stream as the gateway sent it (non-DUP messages) went back to an older version. */
  readonly outOfOrder: string[];
  /** Incidents whose first copies did not arrive as 1, 2, …, last. */
  readonly gaps: string[];
}

/**
 * Checks what the city received against the incidents the gateway holds (docs/UPLINK.md,
 * "Delivery guarantee"): every version of every incident arrives; what the uplink sent (messages
 * without the DUP flag, which marks the broker redelivering from the subscriber's own session)
 * never goes back to an older version of an incident; a repeat of an (id, version) is byte for
 * byte the same; the first copies of each incident are its versions 1..last in order.
 */
export function checkIncidentStream(messages: readonly CityMessage[], incidents: readonly Pick<Incident, 'id' | 'version'>[]): IncidentStreamReport {
  const got = messages.filter((m) => m.topic.includes('/incidents/')).map((m) => ({ m, incident: IncidentSchema.parse(JSON.parse(m.payload)) }));
  const first = new Map<string, string>();
  const fresh = new Map<string, number[]>();
  const sent = new Map<string, number[]>();
  const differing: string[] = [];
  let duplicates = 0;
  for (const { m, incident } of got) {
    const key = `${incident.id}@${incident.version}`;
    const seen = first.get(key);
    if (seen === undefined) {
      first.set(key, m.payload);
      fresh.set(incident.id, [...(fresh.get(incident.id) ?? []), incident.version]);
    } else {
      duplicates++;
      if (seen !== m.payload) differing.push(key);
    }
    if (!m.dup) sent.set(incident.id, [...(sent.get(incident.id) ?? []), incident.version]);
  }
  const lost: string[] = [];
  const outOfOrder: string[] = [];
  const gaps: string[] = [];
  for (const inc of incidents) {
    for (let v = 1; v <= inc.version; v++) if (!first.has(`${inc.id}@${v}`)) lost.push(`${inc.id}@${v}`);
    const vs = sent.get(inc.id) ?? [];
    if (vs.some((v, i) => i > 0 && v < (vs[i - 1] as number))) outOfOrder.push(`${inc.id}: ${vs.join(',')}`);
    const f = fresh.get(inc.id) ?? [];
    if (f.join(',') !== Array.from({ length: inc.version }, (_, i) => i + 1).join(',')) gaps.push(`${inc.id}: ${f.join(',')}`);
  }
  return { delivered: first.size, lost, duplicates, differing, outOfOrder, gaps };
}

/** `GET /metrics` of an in-process gateway's HTTP server, as Prometheus text. */
export async function metricsText(httpPort: number): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${httpPort}/metrics`, { signal: AbortSignal.timeout(10_000) });
  if (!res.ok) throw new Error(`/metrics → HTTP ${res.status}`);
  return res.text();
}

/** The value of one series in Prometheus text (`name{labels} value`); undefined when absent. */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = m[2] ?? '';
    if (want.every((w) => have.includes(w))) return Number(m[3]);
  }
  return undefined;
}
