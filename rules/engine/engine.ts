import type { DeviceRecord } from '../../devices/device-record.js';
import { getModel } from '../../devices/catalogue.js';
import type { Place } from '../../devices/place.js';
import type { Reading } from '../../devices/reading.js';
import { ALARM_EVENTS, SELF_TEST_EVENTS, type Kind } from '../../devices/vocabulary.js';
import type { CompiledNode, CompiledRule } from '../dsl/compile.js';
import { scopeKeyOf, type RuleSignal, type Scope } from '../signals.js';
import { DeadlineQueue } from './deadlines.js';

/*
 * The streaming rule evaluator (SPEC §6, DESIGN.md "rule state and timers live in the store").
 *
 * Model. Every rule has instances, one per scope key (a device, a room…). A reading from device
 * D is evaluated against the instance of D's scope key of every rule that can care about it (an
 * index by kind and by the events, metrics and state flags the rule names). Inside an instance,
 * each condition node keeps its state at its own scope key (leaves per device; a count or an
 * all/any at its scope) and reports into its parent an aggregate: which keys hold now (levels)
 * and when it was last true (for `within`). A pass evaluates the tree bottom-up; a `for` timer
 * or a silentFor deadline firing is a pass without a reading.
 *
 * Raises and clears. A rule raises when its `when` becomes true, and again on each new
 * triggering reading while it is true (the incident manager folds repeats by rule and scope
 * key), except a timed rule (`for`, `silentFor`), which raises once and again only after it
 * cleared (or, without a `clear`, after `when` stopped holding). It clears when `clear` holds
 * while it is raised; a `for` in `clear` counts from the raise at the earliest. Self-test
 * readings and drill devices raise nothing (counted and logged); they still update state and
 * may clear.
 *
 * Durability. Instance state, rise windows, the event times silentFor looks for and the
 * undelivered signals are kept through the injected key/value `state`. Changes that decide a
 * raise (raised/cleared, a `for` timer starting or stopping, counted alarm events, silentFor
 * events) are written before onReading returns; rolling windows at most every
 * `flushIntervalMs`. Signals are handed to onSignal before the state that records them is
 * written, so a crash in between raises again (a folded repeat), never loses one.
 *
 * Time. The engine runs on engine time: wall time less the wall-clock steps (`clockSteps`), so
 * that an NTP step neither fires every silentFor and `for` at once nor freezes them; the offset
 * is saved with the state (docs/SPEC-NOTES.md "Clock steps").
 */

// ---- public seams --------------------------------------------------------------------------

/** The durable key/value the engine keeps its state in: the store's getJson / setJson / deleteJson. */
export interface RuleState {
  get(key: string): unknown;
  set(key: string, value: unknown): void;
  delete(key: string): void;
}

/** The part of a pino logger the engine uses. */
export interface RuleLogger {
  debug?(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

/** A committed reading (ingest/store StoredReading has this shape). */
export interface CommittedReading {
  readonly seq: number;
  readonly reading: Reading;
}

/** What `restore` needs of a stored device state (ingest/store DeviceState fits). */
export interface DeviceLastSeen {
  readonly deviceId: string;
  /** Gateway time of the device's last reading. */
  readonly lastSeen: number;
  readonly kind?: Kind;
  readonly model?: string;
}

export interface RuleEngineDeps {
  readonly rules: readonly CompiledRule[];
  /** Gateway time in ms (injected everywhere: DESIGN.md). */
  readonly clock: () => number;
  /**
   * The wall-clock steps seen so far, summed (ms, positive forward: gateway/wall-clock.ts). The
   * engine measures durations on `clock() - clockSteps()`, so that an NTP step neither fires
   * every timer at once nor freezes them (docs/SPEC-NOTES.md "Clock steps"). Default: none.
   */
  readonly clockSteps?: () => number;
  readonly logger: RuleLogger;
  readonly deviceFor: (deviceId: string) => DeviceRecord | undefined;
  readonly modelHeartbeatMs: (model: string) => number;
  readonly state: RuleState;
  readonly onSignal: (signal: RuleSignal) => void;
  /** Drill mode beyond DeviceRecord.drill, e.g. toggled from the operator API. */
  readonly isDrill?: (deviceId: string, record: DeviceRecord | undefined) => boolean;
  /** Grids in drill mode: none of their devices raise. */
  readonly drillGrids?: Iterable<string>;
  /** Runs one flush's writes in one transaction (the store's `transaction`); default: one by one. */
  readonly transaction?: <T>(fn: () => T) => T;
  /** Namespace of the engine's keys in `state` (default `rules:engine:`). */
  readonly keyPrefix?: string;
  /** Rolling windows are written at most this often (default 1000 ms); decisive changes at once. */
  readonly flushIntervalMs?: number;
}

export interface RuleEngineStats {
  readonly readings: number;
  /** Readings skipped as redeliveries (same seq twice, or already in the saved state after a restart). */
  readonly duplicates: number;
  /** Rule evaluations: one rule against one reading, or one timer. */
  readonly evaluations: number;
  readonly raised: number;
  readonly cleared: number;
  /** Raises not made because of a self-test or drill mode. */
  readonly suppressed: number;
  readonly timersFired: number;
  readonly timersPending: number;
  /** Rule instances held in memory. */
  readonly instances: number;
  /** Signals onSignal threw on, kept and retried. */
  readonly pendingSignals: number;
  /** Over the last full second of the clock (updated by tick). */
  readonly evaluationsPerSecond: number;
  readonly readingsPerSecond: number;
  /** Highest seq whose effects are in the saved state (ack the store cursor up to here). */
  readonly persistedSeq: number;
}

export interface RuleEngine {
  /** A committed reading, in seq order. Signals are delivered before it returns. */
  onReading(stored: CommittedReading): void;
  /** Fires due `for` timers and silentFor deadlines, retries undelivered signals, writes rolling state. Call every 250 ms–1 s. */
  tick(now: number): void;
  /**
   * At start, with the store's device states: offline timers resume from each device's stored
   * last-seen. A device silent long enough while the gateway was down is raised offline now (if
   * it was not already); one that reported recently is not; nothing is cleared by a restart.
   */
  restore(devices: readonly DeviceLastSeen[]): void;
  /** Writes everything pending now (shutdown). */
  flush(): void;
  persistedSeq(): number;
  stats(): RuleEngineStats;
}

// ---- internal structures -------------------------------------------------------------------

type TreeName = 'w' | 'c';

/** A node's state at one key of its scope. Short keys: this is what is stored. */
interface NodeState {
  /** Level leaves: the condition held at the last reading that informed it. */
  h?: boolean;
  /** `for`: since when the inner condition has held; sd/sp: the device and place that started it. */
  s?: number;
  sd?: string;
  sp?: Place;
  /** `for`: it held long enough at the last pass (to see the moment it becomes true). */
  f?: 1;
  /** all/any/not: the children's aggregates at this key. */
  ch?: Agg[];
  /** count: [time, device] of the counted events in the window. */
  w?: [number, string][];
}

/** A child's result, aggregated over the keys of the child's scope inside the parent's key. */
interface Agg {
  /** Keys where the (level) child holds now. */
  n?: string[];
  /** The child has had information at some key (a `not` of nothing known is not true). */
  k?: 1;
  /** The last time it was true. */
  l?: number;
  /** Devices that made it true the last time (for the signal's deviceIds). */
  d?: string[];
}

/** By node id (an array: ids are small dense integers), then by the node's scope key. */
type TreeData = (Record<string, NodeState> | null | undefined)[];

interface InstData {
  /** Raised and not cleared (or, for a timed rule without clear, latched until `when` stops holding). */
  a?: 1;
  /** When it was raised (a `for` in clear counts from here). */
  at?: number;
  w: TreeData;
  wr: Agg;
  c: TreeData;
  cr: Agg;
}

interface Instance {
  readonly rule: RtRule;
  readonly key: string;
  data: InstData;
  persisted: boolean;
}

interface RtNode {
  readonly def: CompiledNode;
  readonly id: number;
  readonly parent: number;
  /** Index among the parent's children. */
  readonly slot: number;
  readonly children: readonly number[];
  /** The parent has `within`: its last-true time matters. */
  readonly needsLast: boolean;
  /** The parent is a `not`: whether anything is known of it matters. */
  readonly needsKnown: boolean;
  readonly kinds: ReadonlySet<Kind>;
  readonly events?: ReadonlySet<string>;
}

interface RtTree {
  readonly name: TreeName;
  readonly nodes: readonly RtNode[];
  /** Post-order: children before parents. */
  readonly order: readonly number[];
  readonly root: number;
  readonly forNodes: readonly number[];
  readonly silentNodes: readonly number[];
  // Scratch for the pass in progress (the engine is single-threaded and not re-entrant).
  readonly truth: boolean[];
  readonly info: boolean[];
  readonly touched: boolean[];
  readonly devs: (readonly string[] | undefined)[];
}

interface RtRule {
  readonly idx: number;
  readonly rule: CompiledRule;
  readonly when: RtTree;
  readonly clear?: RtTree;
  readonly kinds: ReadonlySet<Kind>;
  readonly models?: ReadonlySet<string>;
  readonly exceptModels?: ReadonlySet<string>;
  /** Not timed: every triggering reading raises again. */
  readonly repeats: boolean;
  readonly trackDevs: boolean;
  readonly instances: Map<string, Instance>;
  /** Scope keys with saved state (the index written under `x:`). */
  readonly saved: Set<string>;
  stamp: number;
}

interface Pass {
  /** Engine time (monotonic): wall time less the clock steps. */
  readonly t: number;
  /** The wall time signals carry: the reading's receivedAt, or the deadline's wall equivalent. */
  readonly at: number;
  readonly seq?: number;
  readonly deviceId: string;
  readonly place: Place;
  readonly kind: Kind | undefined;
  readonly reading?: Reading;
  readonly timer?: { readonly tree: TreeName; readonly node: number };
  /** Why raises are withheld in this pass. */
  readonly suppress?: 'self_test' | 'drill';
}

type TimerPayload =
  | { readonly type: 'for'; readonly rule: RtRule; readonly tree: TreeName; readonly instKey: string; readonly node: number; readonly deviceId: string; readonly place: Place }
  | { readonly type: 'silent'; readonly rule: RtRule; readonly tree: TreeName; readonly node: number; readonly deviceId: string };

interface SeenDevice {
  t: number;
  kind: Kind | undefined;
  model: string | undefined;
}

interface KindIndex {
  readonly every: RtRule[];
  readonly byEvent: Map<string, RtRule[]>;
  readonly byMetric: Map<string, RtRule[]>;
  readonly byState: Map<string, RtRule[]>;
}

/** Float noise from register scaling (0.1 °C steps) must not decide a threshold. */
const EPS = 1e-9;
const RECENT_SEQS = 65_536;
const SUPPRESS_LOG_MS = 60_000;
const RETRY_MIN_MS = 1_000;
const RETRY_MAX_MS = 30_000;
/** A count keeps at most this many entries per key (the newest): enough to decide atLeast. */
const COUNT_CAP = 1_000;
/** After a clock step, readings stamped before it may still arrive (commit latency) for this long. */
const IN_FLIGHT_MS = 10_000;

function compare(op: string, v: number, x: number): boolean {
  switch (op) {
    case '>':
      return v > x + EPS;
    case '>=':
      return v >= x - EPS;
    case '<':
      return v < x - EPS;
    case '<=':
      return v <= x + EPS;
    case '==':
      return Math.abs(v - x) <= EPS;
    default:
      return Math.abs(v - x) > EPS;
  }
}

function aggHolds(a: Agg | undefined): boolean {
  return a?.n !== undefined && a.n.length > 0;
}

/** The place at a rule's scope: a room incident is not at one device's address. */
function placeAt(scope: Scope, place: Place): Place {
  switch (scope) {
    case 'device':
      return place;
    case 'room':
      return { grid: place.grid, building: place.building, room: place.room };
    case 'building':
      return { grid: place.grid, building: place.building, room: '' };
    case 'grid':
      return { grid: place.grid, building: '', room: '' };
  }
}

function emptyData(): InstData {
  return { w: [], wr: {}, c: [], cr: {} };
}

function buildTree(name: TreeName, root: CompiledNode): RtTree {
  const nodes: RtNode[] = [];
  const order: number[] = [];
  const visit = (def: CompiledNode, parent: number, slot: number, needsLast: boolean, needsKnown: boolean): void => {
    const children = def.form === 'all' || def.form === 'any' || def.form === 'not' ? def.children : [];
    const within = (def.form === 'all' || def.form === 'any') && def.withinMs !== undefined;
    nodes[def.id] = {
      def,
      id: def.id,
      parent,
      slot,
      children: children.map((c) => c.id),
      needsLast,
      needsKnown,
      kinds: new Set(def.kinds),
      ...(def.form === 'event' || def.form === 'count' ? { events: new Set(def.events) } : def.form === 'silent' && def.events ? { events: new Set(def.events) } : {}),
    };
    children.forEach((c, i) => visit(c, def.id, i, within, def.form === 'not'));
    order.push(def.id);
  };
  visit(root, -1, 0, false, false);
  const n = nodes.length;
  return {
    name,
    nodes,
    order,
    root: root.id,
    forNodes: nodes.filter((x) => x.def.forMs !== undefined).map((x) => x.id),
    silentNodes: nodes.filter((x) => x.def.form === 'silent').map((x) => x.id),
    truth: new Array<boolean>(n).fill(false),
    info: new Array<boolean>(n).fill(false),
    touched: new Array<boolean>(n).fill(false),
    devs: new Array<readonly string[] | undefined>(n).fill(undefined),
  };
}

function nodeMeaningful(st: NodeState): boolean {
  return st.s !== undefined || st.h === true || (st.w !== undefined && st.w.length > 0) || (st.ch?.some(aggMeaningful) ?? false);
}

function aggMeaningful(a: Agg | null | undefined): boolean {
  return a !== null && a !== undefined && (aggHolds(a) || a.l !== undefined);
}

function treeMeaningful(data: TreeData, root: Agg): boolean {
  if (aggMeaningful(root)) return true;
  for (const byKey of data) if (byKey) for (const st of Object.values(byKey)) if (nodeMeaningful(st)) return true;
  return false;
}

function setAdd(list: string[] | undefined, key: string): string[] | undefined {
  if (list?.includes(key)) return undefined;
  return list ? [...list, key] : [key];
}

function unique(...lists: (readonly string[] | undefined)[]): string[] {
  const out = new Set<string>();
  for (const l of lists) if (l) for (const x of l) out.add(x);
  return [...out];
}

// ---- the engine ----------------------------------------------------------------------------

/**
 * Builds the engine and loads its saved state (instances, `for` timers, undelivered signals).
 * Call `restore` with the store's device states before the first reading or tick.
 */
export function createRuleEngine(deps: RuleEngineDeps): RuleEngine {
  const { logger, state } = deps;
  const prefix = deps.keyPrefix ?? 'rules:engine:';
  const flushIntervalMs = deps.flushIntervalMs ?? 1000;
  const drillGrids = new Set(deps.drillGrids ?? []);
  const transaction = deps.transaction ?? (<T>(fn: () => T): T => fn());

  const rules: RtRule[] = deps.rules.map((rule, idx) => {
    const when = buildTree('w', rule.when);
    const clear = rule.clear ? buildTree('c', rule.clear) : undefined;
    return {
      idx,
      rule,
      when,
      ...(clear ? { clear } : {}),
      kinds: new Set(rule.match.kinds),
      ...(rule.match.models ? { models: new Set(rule.match.models) } : {}),
      ...(rule.match.exceptModels ? { exceptModels: new Set(rule.match.exceptModels) } : {}),
      repeats: !rule.timed,
      trackDevs: rule.scope !== 'device',
      instances: new Map(),
      saved: new Set(),
      stamp: 0,
    };
  });
  const ids = new Set<string>();
  for (const r of deps.rules) {
    if (ids.has(r.id)) throw new TypeError(`createRuleEngine: duplicate rule id ${r.id}`);
    ids.add(r.id);
  }

  // ---- index: kind → the rules each event / metric / state flag can change
  const index = new Map<Kind, KindIndex>();
  const indexFor = (k: Kind): KindIndex => {
    let ix = index.get(k);
    if (!ix) {
      ix = { every: [], byEvent: new Map(), byMetric: new Map(), byState: new Map() };
      index.set(k, ix);
    }
    return ix;
  };
  const addTo = (map: Map<string, RtRule[]>, name: string, r: RtRule) => {
    const list = map.get(name) ?? [];
    if (!list.includes(r)) list.push(r);
    map.set(name, list);
  };
  /** metric → the longest rise window over it (one shared history per device and metric). */
  const riseWindow = new Map<string, number>();
  /** Events some silentFor waits for, and the rules with such a silentFor. */
  const silentEvents = new Set<string>();
  const eventSilentRules: RtRule[] = [];
  const silentRules: RtRule[] = [];
  for (const r of rules) {
    for (const tree of [r.when, r.clear]) {
      if (!tree) continue;
      for (const n of tree.nodes) {
        const d = n.def;
        for (const k of d.kinds) {
          if (!r.kinds.has(k)) continue;
          const ix = indexFor(k);
          if (d.form === 'event' || d.form === 'count') d.events.forEach((e) => addTo(ix.byEvent, e, r));
          if (d.form === 'threshold' || d.form === 'rise') d.metrics.forEach((m) => addTo(ix.byMetric, m, r));
          if (d.form === 'state') addTo(ix.byState, d.flag, r);
          if (d.form === 'silent' && !ix.every.includes(r)) ix.every.push(r);
        }
        if (d.form === 'rise') for (const m of d.metrics) riseWindow.set(m, Math.max(riseWindow.get(m) ?? 0, d.withinMs));
        if (d.form === 'silent') {
          d.events?.forEach((e) => silentEvents.add(e));
          if (!silentRules.includes(r)) silentRules.push(r);
          if (d.events && !eventSilentRules.includes(r)) eventSilentRules.push(r);
        }
      }
    }
  }

  const timers = new DeadlineQueue<TimerPayload>();
  const seen = new Map<string, SeenDevice>();
  /** deviceId → event → last time, and `*`: since when the engine has known the device. */
  const eventSeen = new Map<string, Record<string, number>>();
  /** deviceId → metric → monotonic-min deque of [time, value]. */
  const history = new Map<string, Record<string, [number, number][]>>();
  const dirtyInstances = new Set<Instance>();
  const dirtyHistory = new Set<string>();
  const dirtyEvents = new Set<string>();
  const dirtyIndex = new Set<RtRule>();
  let metaDirty = false;
  let hard = false;
  let lastFlush = Number.NEGATIVE_INFINITY;
  let lastT = Number.NEGATIVE_INFINITY;
  let lastSeq = 0;
  let savedSeq = 0;
  /** The last RECENT_SEQS seqs seen (a ring, so that forgetting the oldest is O(1)). */
  const recentSeqs = new Set<number>();
  const recentRing: number[] = [];
  let recentNext = 0;
  /** Readings up to here were in the state the previous run saved (skipped after a restart, alarms excepted). */
  let restartWatermark = 0;
  const outbox: RuleSignal[] = [];
  let pending: RuleSignal[] = [];
  let retryAt = Number.NEGATIVE_INFINITY;
  let retryDelay = RETRY_MIN_MS;
  const suppressLog = new Map<string, number>();
  let stamp = 0;

  // ---- engine time: wall time less the clock steps (docs/SPEC-NOTES.md "Clock steps") -----
  // Everything the engine keeps (timers, `for` starts, windows, last-seen) is in engine time;
  // the offset from wall time is saved with the state, so that a restart goes on where it was.
  // Signals carry wall time (incident timestamps are what people read).
  const stepsOf = deps.clockSteps ?? (() => 0);
  const stepsAtLoad = stepsOf();
  /** Wall time minus engine time, as saved; the current one adds the steps since load. */
  let savedSkew = 0;
  let skew = 0;
  let prevSkew = 0;
  /** Engine time at which the last step was noticed. */
  let stepNoticedAt: number | undefined;

  /** The current offset; a change is a step (saved at once: the state is in engine time). */
  function currentSkew(): number {
    const k = savedSkew + stepsOf() - stepsAtLoad;
    if (k !== skew) {
      prevSkew = skew;
      skew = k;
      stepNoticedAt = deps.clock() - k;
      metaDirty = true;
      hard = true;
      logger.warn({ stepMs: k - prevSkew }, 'rules: the wall clock stepped; timers keep to real elapsed time');
    }
    return k;
  }

  const engineNow = (): number => deps.clock() - currentSkew();

  /**
   * A reading's engine time and the wall time its signals carry. Right after a step a reading
   * stamped before it may still come in: of the two timelines, the one that puts it nearer now
   * is the one it was stamped on, and its signals carry the matching wall time on the new one.
   */
  function placeReading(receivedAt: number): { t: number; at: number } {
    const k = currentSkew();
    const t = receivedAt - k;
    if (stepNoticedAt === undefined) return { t, at: receivedAt };
    const now = deps.clock() - k;
    if (now - stepNoticedAt > IN_FLIGHT_MS) return { t, at: receivedAt };
    const before = receivedAt - prevSkew;
    if (Math.abs(before - now) < Math.abs(t - now)) {
      const placed = Math.min(before, now);
      return { t: placed, at: placed + k };
    }
    return { t: Math.min(t, now), at: receivedAt };
  }

  const counters = { readings: 0, duplicates: 0, evaluations: 0, raised: 0, cleared: 0, suppressed: 0, timersFired: 0 };
  let rate = { at: 0, evaluations: 0, readings: 0 };
  let perSecond = { evaluations: 0, readings: 0 };

  const kInstance = (r: RtRule, key: string) => `${prefix}i:${r.rule.id}:${key}`;
  const kIndex = (r: RtRule) => `${prefix}x:${r.rule.id}`;
  const kHistory = (id: string) => `${prefix}r:${id}`;
  const kEvents = (id: string) => `${prefix}e:${id}`;
  const kMeta = `${prefix}meta`;

  // ---- loading saved state ----------------------------------------------------------------

  function loadSaved(): void {
    const meta = state.get(kMeta) as { seq?: number; pending?: RuleSignal[]; k?: number } | undefined;
    if (meta) {
      restartWatermark = meta.seq ?? 0;
      lastSeq = savedSeq = restartWatermark;
      pending = Array.isArray(meta.pending) ? meta.pending : [];
      if (typeof meta.k === 'number' && Number.isFinite(meta.k)) savedSkew = skew = prevSkew = meta.k;
    }
    for (const r of rules) {
      const saved = state.get(kIndex(r)) as { f?: string; k?: string[] } | undefined;
      if (!saved || !Array.isArray(saved.k)) continue;
      const sameShape = saved.f === r.rule.fingerprint;
      if (!sameShape) logger.warn({ ruleId: r.rule.id }, 'rules: rule changed since its state was saved; keeping only whether it is raised');
      for (const key of saved.k) {
        const raw = state.get(kInstance(r, key)) as Partial<InstData> | undefined;
        if (!raw) continue;
        const data: InstData = sameShape
          ? { w: Array.isArray(raw.w) ? raw.w : [], wr: raw.wr ?? {}, c: Array.isArray(raw.c) ? raw.c : [], cr: raw.cr ?? {}, ...(raw.a ? { a: 1 as const } : {}), ...(raw.at !== undefined ? { at: raw.at } : {}) }
          : { ...emptyData(), ...(raw.a ? { a: 1 as const } : {}), ...(raw.at !== undefined ? { at: raw.at } : {}) };
        const inst: Instance = { rule: r, key, data, persisted: true };
        r.instances.set(key, inst);
        r.saved.add(key);
        if (!sameShape) {
          dirtyInstances.add(inst);
          dirtyIndex.add(r);
        }
        rescheduleFor(inst, r.when, data.w, undefined);
        if (r.clear && data.a) rescheduleFor(inst, r.clear, data.c, data.at);
      }
    }
  }

  function rescheduleFor(inst: Instance, tree: RtTree, data: TreeData, clamp: number | undefined): void {
    for (const id of tree.forNodes) {
      const byKey = data[id];
      if (!byKey) continue;
      const forMs = tree.nodes[id]?.def.forMs ?? 0;
      for (const [nodeKey, st] of Object.entries(byKey)) {
        if (st.s === undefined || st.sd === undefined || !st.sp || st.f) continue;
        const due = Math.max(st.s, clamp ?? st.s) + forMs;
        timers.schedule(forKey(inst.rule, tree.name, id, inst.key, nodeKey), due, {
          type: 'for',
          rule: inst.rule,
          tree: tree.name,
          instKey: inst.key,
          node: id,
          deviceId: st.sd,
          place: st.sp,
        });
      }
    }
  }

  const forKey = (r: RtRule, tree: TreeName, node: number, instKey: string, nodeKey: string) => `f\u0000${r.idx}\u0000${tree}\u0000${node}\u0000${instKey}\u0000${nodeKey}`;
  const silentKey = (r: RtRule, tree: TreeName, node: number, deviceId: string) => `s\u0000${r.idx}\u0000${tree}\u0000${node}\u0000${deviceId}`;

  function eventsOf(deviceId: string): Record<string, number> {
    let rec = eventSeen.get(deviceId);
    if (!rec) {
      const saved = silentEvents.size > 0 ? (state.get(kEvents(deviceId)) as Record<string, number> | undefined) : undefined;
      rec = saved && typeof saved === 'object' ? { ...saved } : {};
      eventSeen.set(deviceId, rec);
    }
    return rec;
  }

  function historyOf(deviceId: string): Record<string, [number, number][]> {
    let rec = history.get(deviceId);
    if (!rec) {
      const saved = state.get(kHistory(deviceId)) as Record<string, [number, number][]> | undefined;
      rec = saved && typeof saved === 'object' ? saved : {};
      history.set(deviceId, rec);
    }
    return rec;
  }

  function instanceFor(r: RtRule, key: string): Instance {
    let inst = r.instances.get(key);
    if (!inst) {
      inst = { rule: r, key, data: emptyData(), persisted: false };
      r.instances.set(key, inst);
    }
    return inst;
  }

  function touch(inst: Instance, decisive: boolean): void {
    dirtyInstances.add(inst);
    if (decisive) hard = true;
  }

  // ---- devices ----------------------------------------------------------------------------

  function isDrill(deviceId: string, place: Place | undefined): boolean {
    const record = deps.deviceFor(deviceId);
    if (record?.drill === true) return true;
    const grid = place?.grid ?? record?.place.grid;
    if (grid !== undefined && drillGrids.has(grid)) return true;
    return deps.isDrill?.(deviceId, record) ?? false;
  }

  function matchesDevice(r: RtRule, kind: Kind | undefined, model: string | undefined): boolean {
    if (kind === undefined || !r.kinds.has(kind)) return false;
    if (r.models && (model === undefined || !r.models.has(model))) return false;
    if (r.exceptModels && model !== undefined && r.exceptModels.has(model)) return false;
    return true;
  }

  function silentSpan(def: Extract<CompiledNode, { form: 'silent' }>, deviceId: string, model: string | undefined): number | undefined {
    if (def.ms !== undefined) return def.ms;
    const record = deps.deviceFor(deviceId);
    const m = model ?? record?.model;
    const heartbeat = record?.heartbeatMs ?? (m === undefined ? undefined : deps.modelHeartbeatMs(m));
    return heartbeat === undefined || !(heartbeat > 0) ? undefined : (def.heartbeats ?? 1) * heartbeat;
  }

  /** When the silence a silentFor measures began: the last (matching) message, or since the engine has known the device. */
  function silentBase(def: Extract<CompiledNode, { form: 'silent' }>, deviceId: string): number | undefined {
    if (!def.events) return seen.get(deviceId)?.t;
    const rec = eventsOf(deviceId);
    let base: number | undefined;
    for (const e of def.events) {
      const at = rec[e];
      if (at !== undefined && (base === undefined || at > base)) base = at;
    }
    return base ?? rec['*'];
  }

  // ---- evaluation -------------------------------------------------------------------------

  function nodeState(data: TreeData, id: number, key: string): NodeState {
    let byKey = data[id];
    if (!byKey) {
      byKey = {};
      data[id] = byKey;
    }
    let st = byKey[key];
    if (!st) {
      st = {};
      byKey[key] = st;
    }
    return st;
  }

  /** Evaluates one tree of an instance for a pass, bottom-up. */
  function evalTree(inst: Instance, tree: RtTree, data: TreeData, root: Agg, p: Pass, clamp: number | undefined, clearActive: boolean): void {
    const r = inst.rule;
    const reading = p.reading;
    const applicable = (n: RtNode) => reading !== undefined && p.kind !== undefined && n.kinds.has(p.kind);
    // The clear tree is evaluated all along (hysteresis needs its levels), but until the rule is
    // raised nothing in it decides anything: its changes wait for the rolling flush.
    const decisive = tree.name === 'w' || clearActive;
    for (const id of tree.order) {
      const n = tree.nodes[id] as RtNode;
      const def = n.def;
      const key = def.scope === 'device' ? p.deviceId : scopeKeyOf(def.scope, p.deviceId, p.place);
      let truth = false;
      let info = false;
      let touched = false;
      let devs: readonly string[] | undefined;
      /** Whether anything is known of it here (a `not` of nothing known is not true). */
      let known = false;
      let st: NodeState | undefined;
      const stateOf = () => (st ??= nodeState(data, id, key));

      switch (def.form) {
        case 'event': {
          if (applicable(n) && reading) truth = info = reading.events.some((e) => n.events?.has(e) ?? false);
          touched = truth;
          if (truth) devs = [p.deviceId];
          break;
        }
        case 'threshold':
        case 'state': {
          if (applicable(n) && reading) {
            let h: boolean | undefined;
            if (def.form === 'state') {
              const v = reading.state[def.flag];
              if (v !== undefined) h = v === def.is;
            } else {
              const bound = thresholdValue(def.value, p.deviceId);
              let present = 0;
              let hits = 0;
              for (const m of def.metrics) {
                const v = reading.metrics[m];
                if (v === undefined) continue;
                present++;
                if (compare(def.op, v, bound)) hits++;
              }
              if (present > 0) h = def.of === 'any' ? hits > 0 : hits === present;
            }
            if (h !== undefined) {
              info = true;
              const prev = (st ?? data[id]?.[key])?.h === true;
              if (h !== prev) {
                const s = stateOf();
                if (h) s.h = true;
                else delete s.h;
                touch(inst, false);
              }
            }
          }
          truth = (st ?? data[id]?.[key])?.h === true;
          touched = truth && info;
          if (truth) devs = [p.deviceId];
          break;
        }
        case 'rise': {
          if (applicable(n) && reading) {
            const hist = historyOf(p.deviceId);
            for (const m of def.metrics) {
              const v = reading.metrics[m];
              if (v === undefined) continue;
              info = true;
              const dq = hist[m];
              if (!dq) continue;
              const from = p.t - def.withinMs;
              let min = v;
              for (const [t, x] of dq) {
                if (t >= from) {
                  min = Math.min(min, x);
                  break;
                }
              }
              if (v - min >= def.by - EPS) truth = true;
            }
          }
          touched = truth;
          if (truth) devs = [p.deviceId];
          break;
        }
        case 'count': {
          if (applicable(n) && reading && reading.events.some((e) => n.events?.has(e) ?? false)) {
            info = true;
            const s = stateOf();
            const from = p.t - def.withinMs;
            let w = (s.w ?? []).filter(([t]) => t >= from);
            if (def.distinctDevices) w = w.filter(([, d]) => d !== p.deviceId);
            w.push([p.t, p.deviceId]);
            if (w.length > COUNT_CAP) w = w.slice(w.length - COUNT_CAP);
            s.w = w;
            touch(inst, decisive);
            const distinct = unique(w.map(([, d]) => d));
            truth = (def.distinctDevices ? distinct.length : w.length) >= def.atLeast;
            if (truth) devs = distinct;
          }
          touched = truth;
          break;
        }
        case 'silent': {
          if (p.kind !== undefined && !n.kinds.has(p.kind)) break;
          const base = silentBase(def, p.deviceId);
          known = base !== undefined;
          const span = silentSpan(def, p.deviceId, seen.get(p.deviceId)?.model);
          const timerHit = p.timer?.tree === tree.name && p.timer.node === id;
          if (base !== undefined && span !== undefined) {
            truth = p.t - base >= span;
            const fresh = reading !== undefined && (!def.events || reading.events.some((e) => n.events?.has(e) ?? false));
            info = fresh || timerHit;
            touched = truth && timerHit;
            // The when tree always waits for the silence; the clear tree only while raised.
            if (!truth && (tree.name === 'w' || clearActive)) {
              timers.schedule(silentKey(r, tree.name, id, p.deviceId), base + span, { type: 'silent', rule: r, tree: tree.name, node: id, deviceId: p.deviceId });
            }
          }
          if (truth) devs = [p.deviceId];
          break;
        }
        case 'all':
        case 'any': {
          const s = data[id]?.[key];
          const within = def.withinMs;
          let all = true;
          let some = false;
          let anyTouched = false;
          let anyInfo = false;
          let collected: string[] | undefined;
          n.children.forEach((c, i) => {
            const child = tree.nodes[c] as RtNode;
            const agg = s?.ch?.[i] ?? undefined;
            let ok: boolean;
            if (within !== undefined) ok = aggHolds(agg) || (agg?.l !== undefined && agg.l >= p.t - within);
            else ok = child.def.level ? aggHolds(agg) : tree.truth[c] === true;
            if (tree.touched[c]) anyTouched = true;
            if (tree.info[c]) anyInfo = true;
            if (ok) {
              some = true;
              if (r.trackDevs) collected = unique(collected, !child.def.level && within === undefined ? tree.devs[c] : agg?.d);
            } else all = false;
          });
          const holds = def.form === 'all' ? all : some;
          info = anyInfo;
          truth = def.level ? holds : holds && anyTouched;
          touched = truth && anyTouched;
          if (truth) devs = collected ?? [p.deviceId];
          break;
        }
        case 'not': {
          const agg = data[id]?.[key]?.ch?.[0];
          const child = n.children[0] as number;
          truth = agg?.k === 1 && !aggHolds(agg);
          info = tree.info[child] === true;
          touched = truth && info;
          if (truth) devs = [p.deviceId];
          break;
        }
      }

      // `for`: the (level) condition must have held without a break for forMs.
      if (def.forMs !== undefined && (truth || (st ?? data[id]?.[key])?.s !== undefined)) {
        const s = stateOf();
        const timerHit = p.timer?.tree === tree.name && p.timer.node === id;
        const tKey = forKey(r, tree.name, id, inst.key, key);
        if (truth) {
          if (s.s === undefined) {
            s.s = p.t;
            s.sd = p.deviceId;
            s.sp = p.place;
            touch(inst, decisive);
          }
          const since = Math.max(s.s, clamp ?? s.s);
          const held = p.t - since >= def.forMs;
          const was = s.f === 1;
          if (held && !was) {
            s.f = 1;
            touch(inst, decisive);
          }
          if (!held) {
            if (was) {
              delete s.f;
              touch(inst, decisive);
            }
            // A `for` in clear only matters while raised (activateClear schedules it then).
            if (tree.name === 'w' || clearActive) {
              timers.schedule(tKey, since + def.forMs, { type: 'for', rule: r, tree: tree.name, instKey: inst.key, node: id, deviceId: s.sd ?? p.deviceId, place: s.sp ?? p.place });
            }
          }
          touched = held && (touched || timerHit || !was);
          info = info || timerHit;
          truth = held;
        } else if (s.s !== undefined) {
          delete s.s;
          delete s.sd;
          delete s.sp;
          delete s.f;
          timers.cancel(tKey);
          touch(inst, decisive);
        }
        if (!truth) touched = false;
      }

      tree.truth[id] = truth;
      tree.info[id] = info;
      tree.touched[id] = touched;
      tree.devs[id] = devs;

      // Report into the parent's aggregate at the parent's key (the root reports into the
      // instance); nothing is allocated when there is nothing to report.
      let pKey = '';
      let agg: Agg | undefined;
      if (n.parent < 0) agg = root;
      else {
        const parent = tree.nodes[n.parent] as RtNode;
        pKey = parent.def.scope === 'device' ? p.deviceId : scopeKeyOf(parent.def.scope, p.deviceId, p.place);
        agg = data[parent.id]?.[pKey]?.ch?.[n.slot] ?? undefined;
      }
      const keep = r.trackDevs ? devs : undefined;
      if (aggNeedsUpdate(agg, def.level, key, truth, n.needsKnown && (known || info), n.needsLast, keep, p.t)) {
        if (!agg) {
          const ch = (nodeState(data, n.parent, pKey).ch ??= []);
          while (ch.length <= n.slot) ch.push({});
          agg = ch[n.slot];
        }
        if (agg) updateAgg(agg, def.level, key, truth, n.needsKnown && (known || info), n.needsLast, keep, p.t);
        touch(inst, decisive && !def.level && truth);
      }
    }
  }

  function aggNeedsUpdate(agg: Agg | undefined, level: boolean, key: string, truth: boolean, known: boolean, keepLast: boolean, devs: readonly string[] | undefined, t: number): boolean {
    if (known && agg?.k !== 1) return true;
    const holding = agg?.n?.includes(key) === true;
    if (level && truth !== holding) return true;
    if (truth && keepLast && agg?.l !== t) return true;
    if (truth && devs && (agg?.d?.length !== devs.length || agg.d.some((d, i) => d !== devs[i]))) return true;
    return false;
  }

  /** Returns whether anything changed. */
  function updateAgg(agg: Agg, level: boolean, key: string, truth: boolean, known: boolean, keepLast: boolean, devs: readonly string[] | undefined, t: number): boolean {
    let changed = false;
    if (known && agg.k !== 1) {
      agg.k = 1;
      changed = true;
    }
    if (level) {
      if (truth) {
        const next = setAdd(agg.n, key);
        if (next) {
          agg.n = next;
          changed = true;
        }
      } else if (agg.n?.includes(key)) {
        const next = agg.n.filter((x) => x !== key);
        if (next.length > 0) agg.n = next;
        else delete agg.n;
        changed = true;
      }
    }
    if (truth) {
      if (keepLast && agg.l !== t) {
        agg.l = t;
        changed = true;
      }
      if (devs && (agg.d?.length !== devs.length || agg.d.some((d, i) => d !== devs[i]))) {
        agg.d = [...devs];
        changed = true;
      }
    }
    return changed;
  }

  function thresholdValue(value: Extract<CompiledNode, { form: 'threshold' }>['value'], deviceId: string): number {
    if (typeof value === 'number') return value;
    const own = deps.deviceFor(deviceId)?.setpoints?.[value.setpoint];
    return own === undefined ? value.default : own * (value.factor ?? 1);
  }

  function rootTruth(tree: RtTree, root: Agg): boolean {
    return (tree.nodes[tree.root] as RtNode).def.level ? aggHolds(root) : tree.truth[tree.root] === true;
  }

  /** After a pass: clear, raise, or neither. */
  function decide(inst: Instance, p: Pass, evaluatedWhen: boolean, evaluatedClear: boolean): void {
    const r = inst.rule;
    const d = inst.data;
    counters.evaluations++;
    if (evaluatedClear && d.a && r.clear && r.rule.clear && rootTruth(r.clear, d.cr)) {
      delete d.a;
      delete d.at;
      touch(inst, true);
      counters.cleared++;
      outbox.push({ kind: 'clear', ruleId: r.rule.id, scopeKey: inst.key, at: p.at });
    }
    if (!evaluatedWhen) return;
    const truth = rootTruth(r.when, d.wr);
    if (truth && r.when.touched[r.when.root]) {
      const suppress = p.suppress ?? (isDrill(p.deviceId, p.place) ? 'drill' : undefined);
      if (suppress) {
        counters.suppressed++;
        const logKey = `${r.rule.id}\u0000${inst.key}`;
        const last = suppressLog.get(logKey);
        if (last === undefined || p.t - last >= SUPPRESS_LOG_MS) {
          suppressLog.set(logKey, p.t);
          logger.info({ ruleId: r.rule.id, scopeKey: inst.key, deviceId: p.deviceId, reason: suppress }, `rules: ${suppress === 'drill' ? 'drill mode' : 'self-test'}, not raised`);
        }
      } else if (!d.a || r.repeats) {
        if (!d.a && (r.rule.clear || r.rule.timed)) {
          d.a = 1;
          d.at = p.t;
          touch(inst, true);
          if (r.clear) activateClear(inst, r.clear, p);
        }
        counters.raised++;
        const rootDevs = (r.when.nodes[r.when.root] as RtNode).def.level ? d.wr.d : r.when.devs[r.when.root];
        outbox.push({
          kind: 'raise',
          ruleId: r.rule.id,
          type: r.rule.type,
          severity: r.rule.severity,
          scope: r.rule.scope,
          scopeKey: inst.key,
          grid: p.place.grid,
          place: placeAt(r.rule.scope, p.place),
          deviceIds: unique([p.deviceId], r.trackDevs ? rootDevs : undefined),
          at: p.at,
          ...(p.seq === undefined ? {} : { readingSeq: p.seq }),
          summary: r.rule.summary,
        });
      }
    }
    // A timed rule without clear re-arms once its condition stops holding.
    if (!r.rule.clear && r.rule.timed && d.a && !truth) {
      delete d.a;
      delete d.at;
      touch(inst, true);
    }
  }

  /** On a raise: a `for` in clear counts from now at the earliest, and a silentFor in clear starts waiting. */
  function activateClear(inst: Instance, tree: RtTree, p: Pass): void {
    for (const id of tree.forNodes) {
      const byKey = inst.data.c[id];
      if (!byKey) continue;
      for (const st of Object.values(byKey)) delete st.f;
    }
    rescheduleFor(inst, tree, inst.data.c, inst.data.at);
    for (const id of tree.silentNodes) {
      const def = (tree.nodes[id] as RtNode).def as Extract<CompiledNode, { form: 'silent' }>;
      const base = silentBase(def, p.deviceId);
      const span = silentSpan(def, p.deviceId, seen.get(p.deviceId)?.model);
      if (base === undefined || span === undefined) continue;
      timers.schedule(silentKey(inst.rule, 'c', id, p.deviceId), base + span, { type: 'silent', rule: inst.rule, tree: 'c', node: id, deviceId: p.deviceId });
    }
  }

  function evaluate(inst: Instance, p: Pass, trees: { when: boolean; clear: boolean }): void {
    const r = inst.rule;
    if (trees.when) evalTree(inst, r.when, inst.data.w, inst.data.wr, p, undefined, false);
    if (trees.clear && r.clear) evalTree(inst, r.clear, inst.data.c, inst.data.cr, p, inst.data.a ? inst.data.at : undefined, inst.data.a === 1);
    decide(inst, p, trees.when, trees.clear);
    if (!inst.persisted && !dirtyInstances.has(inst) && !worthKeeping(inst)) r.instances.delete(inst.key);
  }

  /** What is saved: raised, or `when` state. The clear tree only while raised (serialise). */
  function worthSaving(inst: Instance): boolean {
    const d = inst.data;
    return d.a === 1 || treeMeaningful(d.w, d.wr);
  }

  /**
   * What stays in memory: also the clear tree's levels while not raised (every healthy meter
   * holds "below 200 mA"); keeping them costs a few objects per device and rule, dropping them
   * would rebuild them on every reading.
   */
  function worthKeeping(inst: Instance): boolean {
    return worthSaving(inst) || treeMeaningful(inst.data.c, inst.data.cr);
  }

  // ---- timers -----------------------------------------------------------------------------

  function runDue(now: number): void {
    for (;;) {
      const due = timers.popDue(now);
      if (!due) return;
      counters.timersFired++;
      const t = Math.max(due.deadline, lastT);
      lastT = t;
      const pl = due.payload;
      try {
        if (pl.type === 'for') {
          const inst = instanceFor(pl.rule, pl.instKey);
          const seenDev = seen.get(pl.deviceId);
          const p: Pass = { t, at: due.deadline + skew, deviceId: pl.deviceId, place: pl.place, kind: seenDev?.kind, timer: { tree: pl.tree, node: pl.node } };
          evaluate(inst, p, { when: pl.tree === 'w', clear: pl.tree === 'c' });
        } else {
          const record = deps.deviceFor(pl.deviceId);
          if (!record) continue; // no longer registered: it cannot be offline
          const seenDev = seen.get(pl.deviceId);
          const key = scopeKeyOf(pl.rule.rule.scope, pl.deviceId, record.place);
          const inst = instanceFor(pl.rule, key);
          const p: Pass = { t, at: due.deadline + skew, deviceId: pl.deviceId, place: record.place, kind: seenDev?.kind, timer: { tree: pl.tree, node: pl.node } };
          evaluate(inst, p, { when: pl.tree === 'w', clear: pl.tree === 'c' });
        }
      } catch (err) {
        logger.error({ err, ruleId: pl.rule.rule.id }, 'rules: timer evaluation failed');
      }
    }
  }

  // ---- signals and persistence ------------------------------------------------------------

  function deliver(now: number): void {
    if (outbox.length > 0) {
      for (const signal of outbox.splice(0)) {
        // While onSignal fails, a repeat of a raise that is still waiting adds nothing the
        // incident manager needs (it would fold it): keep the queue bounded by rule and key.
        if (pending.length > 0 && signal.kind === 'raise') {
          const last = pending.findLast((x) => x.ruleId === signal.ruleId && x.scopeKey === signal.scopeKey);
          if (last?.kind === 'raise') continue;
        }
        pending.push(signal);
      }
      metaDirty = true;
    }
    if (pending.length === 0 || now < retryAt) return;
    let sent = 0;
    for (const signal of pending) {
      try {
        deps.onSignal(signal);
        sent++;
      } catch (err) {
        logger.error({ err, code: 'RULE_ERR_SIGNAL', ruleId: signal.ruleId, scopeKey: signal.scopeKey, kind: signal.kind }, 'rules: onSignal threw; the signal is kept and delivered again');
        retryAt = now + retryDelay;
        retryDelay = Math.min(retryDelay * 2, RETRY_MAX_MS);
        hard = true;
        break;
      }
    }
    if (sent > 0) {
      pending = pending.slice(sent);
      metaDirty = true;
      if (pending.length === 0) {
        retryDelay = RETRY_MIN_MS;
        retryAt = Number.NEGATIVE_INFINITY;
      }
    }
  }

  function serialise(inst: Instance): object {
    const d = inst.data;
    return d.a ? d : { w: d.w, wr: d.wr };
  }

  function flush(): void {
    const now = engineNow();
    try {
      transaction(() => {
        for (const inst of dirtyInstances) {
          const r = inst.rule;
          if (!worthSaving(inst)) {
            if (inst.persisted) {
              state.delete(kInstance(r, inst.key));
              inst.persisted = false;
              r.saved.delete(inst.key);
              dirtyIndex.add(r);
            }
            if (r.instances.get(inst.key) === inst && !worthKeeping(inst) && !hasTimers(inst)) r.instances.delete(inst.key);
            continue;
          }
          state.set(kInstance(r, inst.key), serialise(inst));
          if (!inst.persisted) {
            inst.persisted = true;
            r.saved.add(inst.key);
            dirtyIndex.add(r);
          }
        }
        for (const r of dirtyIndex) {
          if (r.saved.size === 0) state.delete(kIndex(r));
          else state.set(kIndex(r), { f: r.rule.fingerprint, k: [...r.saved] });
        }
        for (const id of dirtyHistory) state.set(kHistory(id), history.get(id) ?? {});
        for (const id of dirtyEvents) state.set(kEvents(id), eventSeen.get(id) ?? {});
        if (metaDirty || lastSeq !== savedSeq) state.set(kMeta, { seq: lastSeq, pending, ...(skew !== 0 ? { k: skew } : {}) });
      });
    } catch (err) {
      logger.error({ err }, 'rules: saving rule state failed; it stays in memory and is tried again');
      return;
    }
    dirtyInstances.clear();
    dirtyIndex.clear();
    dirtyHistory.clear();
    dirtyEvents.clear();
    metaDirty = false;
    hard = false;
    savedSeq = lastSeq;
    lastFlush = now;
  }

  /** An instance whose `for` timer is pending must stay in memory even while it looks empty. */
  function hasTimers(inst: Instance): boolean {
    for (const tree of [inst.rule.when, inst.rule.clear]) {
      if (!tree || (tree.name === 'c' && inst.data.a !== 1)) continue;
      const data = tree.name === 'w' ? inst.data.w : inst.data.c;
      for (const id of tree.forNodes) for (const st of Object.values(data[id] ?? {})) if (st.s !== undefined) return true;
    }
    return false;
  }

  // ---- per-reading bookkeeping ------------------------------------------------------------

  function pushHistory(deviceId: string, reading: Reading, t: number): void {
    let hist: Record<string, [number, number][]> | undefined;
    for (const [m, windowMs] of riseWindow) {
      const v = reading.metrics[m];
      if (v === undefined) continue;
      hist ??= historyOf(deviceId);
      const dq = hist[m] ?? [];
      const from = t - windowMs;
      let drop = 0;
      while (drop < dq.length && (dq[drop] as [number, number])[0] < from) drop++;
      if (drop > 0) dq.splice(0, drop);
      // Monotonic: each entry is the minimum from its time to now, so the window's minimum is
      // the first entry inside the window, whatever the window's length.
      while (dq.length > 0 && (dq[dq.length - 1] as [number, number])[1] >= v) dq.pop();
      dq.push([t, v]);
      hist[m] = dq;
    }
    if (hist) dirtyHistory.add(deviceId);
  }

  function noteDevice(deviceId: string, t: number, kind: Kind | undefined, model: string | undefined): void {
    const prev = seen.get(deviceId);
    if (prev) {
      if (t > prev.t) prev.t = t;
      prev.kind = kind ?? prev.kind;
      prev.model = model ?? prev.model;
    } else seen.set(deviceId, { t, kind, model });
    // The clock of "no test press for 35 days" starts when the engine first knows the device,
    // and is kept: a restart must not start it again.
    if (eventSilentRules.some((r) => matchesDevice(r, kind, model))) {
      const rec = eventsOf(deviceId);
      if (rec['*'] === undefined) {
        rec['*'] = t;
        dirtyEvents.add(deviceId);
        hard = true;
      }
    }
  }

  function candidates(reading: Reading): RtRule[] {
    const ix = index.get(reading.kind);
    if (!ix) return [];
    const s = ++stamp;
    const out: RtRule[] = [];
    const add = (list: RtRule[] | undefined) => {
      if (!list) return;
      for (const r of list) {
        if (r.stamp === s) continue;
        r.stamp = s;
        out.push(r);
      }
    };
    add(ix.every);
    for (const e of reading.events) add(ix.byEvent.get(e));
    for (const m in reading.metrics) add(ix.byMetric.get(m));
    for (const f in reading.state) add(ix.byState.get(f));
    if (out.length > 1) out.sort((a, b) => a.idx - b.idx);
    return out;
  }

  // ---- the seams --------------------------------------------------------------------------

  function onReading(stored: CommittedReading): void {
    const { seq, reading } = stored;
    const alarm = reading.events.some((e) => ALARM_EVENTS.has(e));
    if (recentSeqs.has(seq) || (seq <= restartWatermark && !alarm)) {
      counters.duplicates++;
      return;
    }
    recentSeqs.add(seq);
    if (recentRing.length < RECENT_SEQS) recentRing.push(seq);
    else {
      recentSeqs.delete(recentRing[recentNext] as number);
      recentRing[recentNext] = seq;
      recentNext = (recentNext + 1) % RECENT_SEQS;
    }
    const placed = placeReading(reading.receivedAt);
    runDue(placed.t);
    const t = Math.max(placed.t, lastT);
    lastT = t;
    if (seq > lastSeq) lastSeq = seq;
    counters.readings++;

    const deviceId = reading.deviceId;
    noteDevice(deviceId, t, reading.kind, reading.model);
    for (const e of reading.events) {
      if (!silentEvents.has(e)) continue;
      eventsOf(deviceId)[e] = t;
      dirtyEvents.add(deviceId);
      hard = true;
    }
    if (riseWindow.size > 0) pushHistory(deviceId, reading, t);

    // SPEC §6: a self-test raises nothing. A reading that also carries an alarm event is not a
    // test of that alarm (the codecs never derive one from a test): the alarm is not withheld.
    const selfTest = reading.events.some((e) => SELF_TEST_EVENTS.has(e)) && !alarm;
    const drill = isDrill(deviceId, reading.place);
    const p: Pass = {
      t,
      at: placed.at,
      seq,
      deviceId,
      place: reading.place,
      kind: reading.kind,
      reading,
      ...(selfTest ? { suppress: 'self_test' as const } : drill ? { suppress: 'drill' as const } : {}),
    };
    for (const r of candidates(reading)) {
      if (!matchesDevice(r, reading.kind, reading.model)) continue;
      try {
        evaluate(instanceFor(r, scopeKeyOf(r.rule.scope, deviceId, reading.place)), p, { when: true, clear: true });
      } catch (err) {
        logger.error({ err, ruleId: r.rule.id, deviceId, seq }, 'rules: evaluation failed');
      }
    }
    deliver(engineNow());
    if (hard) flush();
  }

  function tick(wallNow: number): void {
    const now = wallNow - currentSkew();
    runDue(now);
    if (now > lastT) lastT = now;
    deliver(now);
    if (hard || (now - lastFlush >= flushIntervalMs && (dirtyInstances.size > 0 || dirtyHistory.size > 0 || dirtyEvents.size > 0 || metaDirty || lastSeq !== savedSeq))) flush();
    const clockNow = engineNow();
    if (clockNow - rate.at >= 1000) {
      const secs = (clockNow - rate.at) / 1000;
      perSecond = { evaluations: (counters.evaluations - rate.evaluations) / secs, readings: (counters.readings - rate.readings) / secs };
      rate = { at: clockNow, evaluations: counters.evaluations, readings: counters.readings };
    }
  }

  function restore(devices: readonly DeviceLastSeen[]): void {
    // Stored last-seen times are wall times. One stamped before a step that happened in the
    // previous run is off by that step until the device reports again (docs/SPEC-NOTES.md).
    const k = currentSkew();
    for (const dev of devices) {
      const record = deps.deviceFor(dev.deviceId);
      if (!record) continue;
      const model = dev.model ?? record.model;
      const kind = dev.kind ?? getModel(model)?.kind;
      noteDevice(dev.deviceId, dev.lastSeen - k, kind, model);
      for (const r of silentRules) {
        if (!matchesDevice(r, kind, model)) continue;
        const inst = r.instances.get(scopeKeyOf(r.rule.scope, dev.deviceId, record.place));
        for (const tree of [r.when, r.clear]) {
          if (!tree || (tree.name === 'c' && inst?.data.a !== 1)) continue;
          for (const id of tree.silentNodes) {
            const def = (tree.nodes[id] as RtNode).def as Extract<CompiledNode, { form: 'silent' }>;
            if (kind === undefined || !def.kinds.includes(kind)) continue;
            const base = silentBase(def, dev.deviceId);
            const span = silentSpan(def, dev.deviceId, model);
            if (base === undefined || span === undefined) continue;
            timers.schedule(silentKey(r, tree.name, id, dev.deviceId), base + span, { type: 'silent', rule: r, tree: tree.name, node: id, deviceId: dev.deviceId });
          }
        }
      }
    }
    const now = engineNow();
    runDue(now);
    deliver(now);
    flush();
  }

  loadSaved();
  rate = { at: engineNow(), evaluations: 0, readings: 0 };

  return {
    onReading,
    tick,
    restore,
    flush,
    persistedSeq: () => savedSeq,
    stats() {
      let instances = 0;
      for (const r of rules) instances += r.instances.size;
      return {
        ...counters,
        timersPending: timers.size,
        instances,
        pendingSignals: pending.length,
        evaluationsPerSecond: perSecond.evaluations,
        readingsPerSecond: perSecond.readings,
        persistedSeq: savedSeq,
      };
    },
  };
}
