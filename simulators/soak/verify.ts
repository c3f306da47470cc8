import Database from 'better-sqlite3';
import { RULE_OF_EVENT } from './alarms.js';
import type { CityMessage } from './city.js';

/*
 * What the soak checks once the gateway has been stopped cleanly after the last crash, from the
 * files it left (gridedge.db, incidents.db) and what the city subscriber received. Each finding
 * is a sentence in `problems`; an empty list is a pass.
 *
 * "No incident duplicated or forgotten", with folding (SPEC §6/§7: a raise of the same rule and
 * scope key folds into the active incident; nobody acknowledges or resolves anything here, so
 * every incident stays active for the whole run):
 * - the alarms are the stored readings carrying fire_alarm, sos or fall. Every PUBACKed sos or
 *   fall is one; a PUBACKed fire is stored with smoke set, and it is a fire_alarm exactly when the
 *   device's previous stored reading had smoke clear (the event is an edge against the last
 *   stored state, also across a crash: no fire swallowed by a stale state, none invented). A
 *   stored alarm the device never got a PUBACK for counts too: it was committed before the kill
 *   took the PUBACK with it;
 * - for each (rule, device) with at least one such reading there is exactly one incident
 *   (a second one would be a duplicate opened by a replay after a crash), and its `count` equals
 *   the number of those readings: a replayed reading is not counted twice (`lastReadingSeq`), and
 *   none is skipped or forgotten;
 * - there is no incident for any other (rule, scope key): telemetry raises nothing.
 * Upstream (docs/UPLINK.md, at least once, "same id and version means the same content"): every
 * incident's `opened` (version 1) reached the city broker; every version of every incident
 * reached it or still waits in the durable outbox; one id and version never came with two
 * different payloads; no id reached the city that the gateway does not hold; and no (rule, scope
 * key) was opened upstream under two ids. Re-sends of the same id and version are counted.
 */

export interface LedgerKeys {
  /** `deviceId@ts` of every PUBACKed message. */
  readonly acked: ReadonlySet<string>;
  /** `deviceId@ts` → alarm event, of every PUBACKed alarm. */
  readonly ackedAlarms: ReadonlyMap<string, string>;
}

export interface Verification {
  readonly problems: string[];
  readonly stored: number;
  readonly lost: number;
  readonly alarmReadings: number;
  readonly incidentsExpected: number;
  readonly incidentsSeen: number;
  readonly openedUpstream: number;
  readonly upstreamMessages: number;
  /** Messages upstream beyond the first of each id and version. */
  readonly resends: number;
  readonly outboxLeft: number;
}

interface StoredIncident {
  id: string;
  version: number;
  ruleId: string;
  scopeKey: string;
  count: number;
  status: string;
}

/** Lists at most a few items in a problem sentence. */
function few(items: readonly string[], n = 5): string {
  return items.length <= n ? items.join(', ') : `${items.slice(0, n).join(', ')} … (${items.length} in all)`;
}

interface StoredView {
  /** `deviceId@ts` → the events of the reading(s) stored under it. */
  keys: Map<string, string[]>;
  /** `deviceId@ts` of smoke readings with smoke set. */
  smoky: Set<string>;
  /** `rule/deviceId` → stored alarm readings. */
  alarms: Map<string, number>;
  /** Smoke readings whose fire_alarm disagrees with the previous stored reading's smoke state. */
  badEdges: string[];
}

function readStore(dbPath: string): StoredView {
  const db = new Database(dbPath, { readonly: true, fileMustExist: true });
  try {
    const keys = new Map<string, string[]>();
    const alarms = new Map<string, number>();
    const smoky = new Set<string>();
    const badEdges: string[] = [];
    const lastSmoke = new Map<string, boolean>();
    const rows = db.prepare<[], { device_id: string; kind: string; ts: number; json: string }>('SELECT device_id, kind, ts, json FROM readings ORDER BY seq').all();
    for (const r of rows) {
      const { events, state } = JSON.parse(r.json) as { events: string[]; state?: { smoke?: boolean } };
      const key = `${r.device_id}@${r.ts}`;
      keys.set(key, [...(keys.get(key) ?? []), ...events]);
      if (r.kind === 'smoke') {
        const smoke = state?.smoke === true;
        if (smoke) smoky.add(key);
        const edge = smoke && lastSmoke.get(r.device_id) !== true;
        if (edge !== events.includes('fire_alarm')) badEdges.push(`${key} (${edge ? 'no fire_alarm on a rising smoke state' : 'fire_alarm without a rising smoke state'})`);
        lastSmoke.set(r.device_id, smoke);
      }
      for (const e of events) {
        const rule = RULE_OF_EVENT[e];
        if (rule !== undefined) alarms.set(`${rule}/${r.device_id}`, (alarms.get(`${rule}/${r.device_id}`) ?? 0) + 1);
      }
    }
    return { keys, smoky, alarms, badEdges };
  } finally {
    db.close();
  }
}

function readIncidents(path: string): { incidents: StoredIncident[]; outbox: Map<string, number[]> } {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    const incidents = db
      .prepare<[], { json: string }>('SELECT json FROM incidents ORDER BY id')
      .all()
      .map((r) => JSON.parse(r.json) as StoredIncident);
    const outbox = new Map<string, number[]>();
    for (const r of db.prepare<[], { incident_id: string; version: number }>('SELECT incident_id, version FROM outbox').all()) {
      outbox.set(r.incident_id, [...(outbox.get(r.incident_id) ?? []), r.version]);
    }
    return { incidents, outbox };
  } finally {
    db.close();
  }
}

export function verifyKill9(files: { dbPath: string; incidentsPath: string }, ledger: LedgerKeys, city: readonly CityMessage[]): Verification {
  const problems: string[] = [];
  const store = readStore(files.dbPath);

  // ---- no loss ----
  const lost = [...ledger.acked].filter((k) => !store.keys.has(k));
  if (lost.length > 0) problems.push(`${lost.length} PUBACKed readings are not in the store: ${few(lost)}`);
  const notAlarms = [...ledger.ackedAlarms]
    .filter(([k, e]) => store.keys.has(k) && (e === 'fire_alarm' ? !store.smoky.has(k) : !(store.keys.get(k) ?? []).includes(e)))
    .map(([k, e]) => `${k} (${e})`);
  if (notAlarms.length > 0) problems.push(`${notAlarms.length} PUBACKed alarms were stored as something else: ${few(notAlarms)}`);
  if (store.badEdges.length > 0) problems.push(`${store.badEdges.length} smoke readings disagree with the stored state before them: ${few(store.badEdges)}`);

  // ---- one incident per (rule, device), counting every alarm reading once ----
  const { incidents, outbox } = readIncidents(files.incidentsPath);
  const byKey = new Map<string, StoredIncident[]>();
  for (const inc of incidents) byKey.set(`${inc.ruleId}/${inc.scopeKey}`, [...(byKey.get(`${inc.ruleId}/${inc.scopeKey}`) ?? []), inc]);
  for (const [key, n] of store.alarms) {
    const found = byKey.get(key) ?? [];
    if (found.length === 0) problems.push(`forgotten: ${n} stored alarm readings of ${key} and no incident`);
    else if (found.length > 1) problems.push(`duplicated: ${found.length} incidents for ${key} (${few(found.map((i) => `${i.id} ${i.status}`))})`);
    else if (found[0]?.count !== n) problems.push(`${key}: incident ${found[0]?.id} counts ${found[0]?.count} raises for ${n} stored alarm readings`);
  }
  const unexpected = [...byKey.keys()].filter((k) => !store.alarms.has(k));
  if (unexpected.length > 0) problems.push(`incidents without an alarm reading: ${few(unexpected)}`);

  // ---- upstream ----
  const stored = new Map(incidents.map((i) => [i.id, i]));
  const payloads = new Map<string, Set<string>>();
  for (const m of city) payloads.set(`${m.id}@${m.version}`, (payloads.get(`${m.id}@${m.version}`) ?? new Set()).add(m.payload));
  const conflicting = [...payloads].filter(([, p]) => p.size > 1).map(([k, p]) => `${k} (${p.size} payloads)`);
  if (conflicting.length > 0) problems.push(`one id and version came upstream with different payloads: ${few(conflicting)}`);
  const foreign = [...new Set(city.map((m) => m.id))].filter((id) => !stored.has(id));
  if (foreign.length > 0) problems.push(`incidents upstream that the gateway does not hold: ${few(foreign)}`);
  const openedIds = new Map<string, Set<string>>();
  for (const m of city) if (m.version === 1) openedIds.set(`${m.ruleId}/${m.scopeKey}`, (openedIds.get(`${m.ruleId}/${m.scopeKey}`) ?? new Set()).add(m.id));
  const twice = [...openedIds].filter(([, ids]) => ids.size > 1).map(([k, ids]) => `${k} (${[...ids].join(', ')})`);
  if (twice.length > 0) problems.push(`opened upstream under two ids: ${few(twice)}`);
  const neverOpened = incidents.filter((i) => !payloads.has(`${i.id}@1`)).map((i) => i.id);
  if (neverOpened.length > 0) problems.push(`${neverOpened.length} incidents never reached the city broker as opened: ${few(neverOpened)}`);
  const missingVersions: string[] = [];
  for (const inc of incidents) {
    const pending = new Set(outbox.get(inc.id) ?? []);
    for (let v = 1; v <= inc.version; v++) if (!payloads.has(`${inc.id}@${v}`) && !pending.has(v)) missingVersions.push(`${inc.id}@${v}`);
  }
  if (missingVersions.length > 0) problems.push(`changes neither delivered upstream nor in the outbox: ${few(missingVersions)}`);

  return {
    problems,
    stored: store.keys.size,
    lost: lost.length,
    alarmReadings: [...store.alarms.values()].reduce((a, b) => a + b, 0),
    incidentsExpected: store.alarms.size,
    incidentsSeen: incidents.length,
    openedUpstream: incidents.length - neverOpened.length,
    upstreamMessages: city.length,
    resends: city.length - payloads.size,
    outboxLeft: [...outbox.values()].reduce((a, b) => a + b.length, 0),
  };
}
