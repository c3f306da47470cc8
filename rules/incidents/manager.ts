import { splitGridCode } from '../../devices/place.js';
import type { RuleSignal, Severity } from '../signals.js';
import { IncidentError } from './errors.js';
import { redactPersonalData, type Redactor } from './redact.js';
import {
  ACTION_TO_TIMELINE,
  ACTOR_MAX,
  LEVEL_UNITS,
  MAX_LEVEL,
  MAX_SIGNAL_ENTRIES,
  NOTE_MAX,
  TRANSITIONS,
  beijingDay,
  formatIncidentId,
  isActiveStatus,
  type Incident,
  type IncidentAction,
  type IncidentChange,
  type TimelineEntry,
} from './schema.js';
import type { IncidentQuery, IncidentStore } from './store.js';

/** The part of a pino logger the manager uses. Never given residents' data: ids, types, levels only. */
export interface IncidentManagerLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

/** Gateway time, injected (STYLE.md): escalation is tested without sleeping. */
export interface IncidentClock {
  /** Wall-clock ms: what incidents are stamped with. */
  now(): number;
  /**
   * The wall-clock steps seen so far, summed (ms, positive forward: gateway/wall-clock.ts). On a
   * step the open incidents' deadlines move with it, so that escalation keeps to real elapsed
   * time (docs/SPEC-NOTES.md "Clock steps"). Default: none.
   */
  steps?(): number;
}

/** Acknowledgement delay per severity, ms; `null`: never escalates (config `escalation`, SPEC §11). */
export type EscalationDelays = Readonly<Record<Severity, number | null>>;

export interface IncidentManagerDeps {
  readonly gatewayId: string;
  readonly store: IncidentStore;
  readonly clock: IncidentClock;
  readonly logger: IncidentManagerLogger;
  readonly escalation: EscalationDelays;
  /**
   * Told of every change after it is committed (with its uplink outbox row). Runs in a bulkhead:
   * an exception is logged and changes nothing. The gateway republishes locally, streams to the
   * dashboard and sends the device its `ack` downlink from here.
   */
  readonly onChange?: (incident: Incident, change: IncidentChange) => void;
  /** Applied to every free-text field (summary, note, actor). Default: `redactPersonalData`. */
  readonly redact?: Redactor;
  /** SPEC §7: a pager's cancel cancels an SOS raised within this window. Default 2 min. */
  readonly deviceCancelWindowMs?: number;
}

export interface IncidentManager {
  /** Loads the active incidents; deadlines that passed while the gateway was down fire now, once. */
  start(): void;
  /** Refuses further changes (the store is closed by its owner). */
  stop(): void;
  /**
   * A raise opens an incident, or folds into the active one of (ruleId, scopeKey); a clear records
   * `condition_cleared` on it (a human closes incidents). Returns the incident concerned, if any.
   */
  onSignal(signal: RuleSignal): Incident | undefined;
  /** A human action. Throws INC_ERR_NOT_FOUND, INC_ERR_TRANSITION. */
  transition(id: string, action: IncidentAction, actor: string, note?: string): Incident;
  /** SPEC §7: a pager `cancel`. Returns the incidents it changed. */
  cancelFromDevice(deviceId: string, at: number): Incident[];
  /** Escalates every open incident whose deadline is at or before `now`; returns them. */
  tick(now?: number): Incident[];
  /** The earliest escalation deadline, for the gateway's timer; undefined when none. */
  nextDeadline(): number | undefined;
  list(query?: IncidentQuery): Incident[];
  get(id: string): Incident | undefined;
}

/** SPEC §7 names the SOS; a fall is detected, not pressed, and a fire is never called off by a pager. */
export const DEVICE_CANCELLABLE_TYPES: readonly string[] = ['sos'];
export const DEFAULT_DEVICE_CANCEL_WINDOW_MS = 2 * 60_000;

const SEVERITY_RANK: Readonly<Record<Severity, number>> = { critical: 0, major: 1, minor: 2, info: 3 };
const SYSTEM = 'system';

function unitAt(grid: string, level: number): Incident['unit'] {
  const parts = splitGridCode(grid);
  const kind = LEVEL_UNITS[level] ?? 'district';
  return { kind, code: parts[kind] };
}

const truncate = (s: string, max: number): string => (s.length > max ? s.slice(0, max) : s);

export function createIncidentManager(deps: IncidentManagerDeps): IncidentManager {
  const { gatewayId, store, clock, logger, escalation } = deps;
  const redact = deps.redact ?? redactPersonalData;
  const cancelWindow = deps.deviceCancelWindowMs ?? DEFAULT_DEVICE_CANCEL_WINDOW_MS;

  /** Active incidents (open, acknowledged, dispatched) by id, and by (rule, scope key). */
  const active = new Map<string, Incident>();
  const byKey = new Map<string, string>();
  const idSeqs = new Map<string, number>();
  let started = false;
  /** The clock steps accounted for so far, and the total when each active incident was opened or loaded. */
  let steps = clock.steps?.() ?? 0;
  const stepsAtOpen = new Map<string, number>();

  // Rooms and buildings are free text typed by installers ("王大爷家"): they and the scope key
  // built from them are redacted too. The redactor is deterministic, so the key of a signal and
  // the key stored with its incident still match after a restart.
  const scopeKeyOf = (raw: string): string => truncate(redact(raw), 256);
  const keyOf = (ruleId: string, scopeKey: string): string => `${ruleId}\u0000${scopeKey}`;
  const text = (s: string | undefined, max = NOTE_MAX): string | undefined => (s === undefined || s === '' ? undefined : truncate(redact(s), max));
  const entry = (at: number, action: TimelineEntry['action'], actor: string, note?: string): TimelineEntry => {
    const e: TimelineEntry = { at, action, actor: truncate(redact(actor), ACTOR_MAX) || SYSTEM };
    const n = text(note);
    if (n !== undefined) e.note = n;
    return e;
  };
  const delayOf = (severity: Severity): number | null => escalation[severity] ?? null;

  const assertStarted = (): void => {
    if (!started) throw new IncidentError('INC_ERR_NOT_STARTED');
  };

  const remember = (inc: Incident): void => {
    const key = keyOf(inc.ruleId, inc.scopeKey);
    if (isActiveStatus(inc.status)) {
      active.set(inc.id, inc);
      byKey.set(key, inc.id);
      if (!stepsAtOpen.has(inc.id)) stepsAtOpen.set(inc.id, steps);
    } else {
      active.delete(inc.id);
      stepsAtOpen.delete(inc.id);
      if (byKey.get(key) === inc.id) byKey.delete(key);
    }
  };

  /** Store first (incident + outbox row, one transaction), then memory, then the listeners. */
  const commit = (changes: readonly { incident: Incident; change: IncidentChange }[]): void => {
    if (changes.length === 0) return;
    store.appendChanges(changes.map((c) => c.incident));
    for (const { incident } of changes) remember(incident);
    for (const { incident, change } of changes) {
      try {
        deps.onChange?.(incident, change);
      } catch (err) {
        logger.error({ err, incident: incident.id, action: change.action }, 'incident: an onChange listener threw');
      }
    }
  };

  /** Appends an entry and bumps the version; `updatedAt` never goes back. */
  const changed = (inc: Incident, patch: Partial<Incident>, e: TimelineEntry | undefined, at: number): Incident => ({
    ...inc,
    ...patch,
    version: inc.version + 1,
    updatedAt: Math.max(inc.updatedAt, at),
    timeline: e ? [...inc.timeline, e] : inc.timeline,
  });

  const signalEntries = (inc: Incident): number => inc.timeline.filter((t) => t.action === 'repeated' || t.action === 'condition_cleared').length;

  const nextId = (at: number): string => {
    const day = beijingDay(at);
    const seq = Math.max(idSeqs.get(day) ?? 0, store.lastIdSeq(day)) + 1;
    idSeqs.set(day, seq);
    return formatIncidentId(gatewayId, day, seq);
  };

  const open = (s: Extract<RuleSignal, { kind: 'raise' }>): Incident => {
    const delay = delayOf(s.severity);
    const summary = text(s.summary);
    const place: Incident['place'] = { grid: s.place.grid, building: truncate(redact(s.place.building), 64), room: truncate(redact(s.place.room), 64) };
    if (s.place.address !== undefined) place.address = truncate(redact(s.place.address), 256);
    const inc: Incident = {
      id: nextId(s.at),
      gatewayId,
      version: 1,
      type: s.type,
      severity: s.severity,
      status: 'open',
      grid: s.grid,
      place,
      deviceIds: [...new Set(s.deviceIds)],
      ruleId: s.ruleId,
      scope: s.scope,
      scopeKey: scopeKeyOf(s.scopeKey),
      ...(summary !== undefined ? { summary } : {}),
      openedAt: s.at,
      lastSeenAt: s.at,
      updatedAt: s.at,
      clearedAt: null,
      count: 1,
      ...(s.readingSeq !== undefined ? { lastReadingSeq: s.readingSeq } : {}),
      level: 0,
      unit: unitAt(s.grid, 0),
      ackDeadline: delay === null ? null : s.at + delay,
      timeline: [entry(s.at, 'opened', `rule:${s.ruleId}`, summary)],
    };
    // If the commit fails the id is not reused: a hole in the sequence is harmless, a reuse is not.
    commit([{ incident: inc, change: inc.timeline[0] as TimelineEntry }]);
    logger.info({ incident: inc.id, type: inc.type, severity: inc.severity, grid: inc.grid, rule: inc.ruleId }, 'incident opened');
    return inc;
  };

  const fold = (inc: Incident, s: Extract<RuleSignal, { kind: 'raise' }>): Incident => {
    if (s.readingSeq !== undefined && inc.lastReadingSeq !== undefined && s.readingSeq <= inc.lastReadingSeq) {
      return inc; // the same reading again (replay), already counted
    }
    const patch: Partial<Incident> = {
      count: inc.count + 1,
      lastSeenAt: Math.max(inc.lastSeenAt, s.at),
      clearedAt: null,
      deviceIds: [...new Set([...inc.deviceIds, ...s.deviceIds])],
      ...(s.readingSeq !== undefined ? { lastReadingSeq: s.readingSeq } : {}),
    };
    const notes: string[] = [];
    if (inc.clearedAt !== null) notes.push('condition returned');
    // The same rule and scope raising a worse severity: the incident takes it, and an open one
    // gets the (possibly shorter) deadline of that severity.
    let forceEntry = inc.clearedAt !== null;
    if (SEVERITY_RANK[s.severity] < SEVERITY_RANK[inc.severity]) {
      patch.severity = s.severity;
      notes.push(`severity ${inc.severity} → ${s.severity}`);
      forceEntry = true;
      const delay = delayOf(s.severity);
      if (inc.status === 'open' && inc.level < MAX_LEVEL && delay !== null) {
        patch.ackDeadline = Math.min(inc.ackDeadline ?? Number.POSITIVE_INFINITY, s.at + delay);
      }
    }
    const summary = text(s.summary);
    if (summary !== undefined) notes.push(summary);
    const e = forceEntry || signalEntries(inc) < MAX_SIGNAL_ENTRIES ? entry(s.at, 'repeated', `rule:${s.ruleId}`, notes.join('; ')) : undefined;
    const next = changed(inc, patch, e, s.at);
    commit([{ incident: next, change: e ?? entry(s.at, 'repeated', `rule:${s.ruleId}`) }]);
    return next;
  };

  const clear = (s: Extract<RuleSignal, { kind: 'clear' }>): Incident | undefined => {
    const id = byKey.get(keyOf(s.ruleId, scopeKeyOf(s.scopeKey)));
    const inc = id === undefined ? undefined : active.get(id);
    if (!inc) return undefined;
    if (inc.clearedAt !== null) return inc; // already cleared: nothing new to say
    const e = entry(s.at, 'condition_cleared', `rule:${s.ruleId}`);
    // Escalation goes on: a cleared condition is not an acknowledgement (SPEC §7).
    const next = changed(inc, { clearedAt: s.at }, signalEntries(inc) < MAX_SIGNAL_ENTRIES ? e : undefined, s.at);
    commit([{ incident: next, change: e }]);
    return next;
  };

  /**
   * A wall-clock step since the last call moves every open deadline by the step (a new version,
   * persisted and sent upstream: the deadline in wall time is what the city reads), so that an
   * incident escalates after the real delay, neither at once (forward) nor an hour late (back).
   */
  const followSteps = (): void => {
    const total = clock.steps?.() ?? 0;
    if (total === steps) return;
    const step = total - steps;
    const now = clock.now();
    const note = `the gateway clock stepped ${step > 0 ? '+' : ''}${Math.round(step / 1000)} s; deadline moved with it`;
    const changes = [...active.values()]
      .filter((i) => i.status === 'open' && i.ackDeadline !== null)
      .map((inc) => {
        const e = entry(now, 'repeated', SYSTEM, note);
        // Not a timeline entry (nothing happened to the incident); the version carries the deadline.
        return { incident: changed(inc, { ackDeadline: Math.max(0, (inc.ackDeadline as number) + step) }, undefined, now), change: e };
      });
    // A failed commit throws before the step is taken as done: the caller (tick, onSignal) retries.
    commit(changes);
    steps = total;
    logger.warn({ stepMs: step, moved: changes.length }, 'incidents: the wall clock stepped; open deadlines moved with it');
  };

  const escalate = (now: number, atStart: boolean): Incident[] => {
    const due = [...active.values()]
      .filter((i) => i.status === 'open' && i.ackDeadline !== null && i.ackDeadline <= now)
      .sort((a, b) => (a.ackDeadline as number) - (b.ackDeadline as number) || (a.id < b.id ? -1 : 1));
    const changes = due.map((inc) => {
      if (inc.level >= MAX_LEVEL) {
        // Nothing above the district: a deadline here is stale (should not happen); drop it.
        const e = entry(now, 'escalated', SYSTEM, 'already at district level');
        return { incident: changed(inc, { ackDeadline: null }, e, now), change: e };
      }
      const level = inc.level + 1;
      const unit = unitAt(inc.grid, level);
      const delay = delayOf(inc.severity);
      // From now, not from the missed deadline: a deadline that passed while the gateway was
      // down escalates exactly once at start, then the ladder resumes at its normal pace.
      const ackDeadline = level >= MAX_LEVEL || delay === null ? null : now + delay;
      const note = `to ${unit.kind} ${unit.code}${atStart ? ' (deadline passed while the gateway was down)' : ''}`;
      const e = entry(now, 'escalated', SYSTEM, note);
      return { incident: changed(inc, { level, unit, ackDeadline }, e, now), change: e };
    });
    commit(changes);
    for (const { incident } of changes) {
      logger.warn({ incident: incident.id, type: incident.type, severity: incident.severity, grid: incident.grid, escalationLevel: incident.level, unit: incident.unit.code }, 'incident escalated: not acknowledged in time');
    }
    return changes.map((c) => c.incident);
  };

  return {
    start() {
      if (started) return;
      active.clear();
      byKey.clear();
      for (const inc of store.loadActive()) remember(inc);
      started = true;
      logger.info({ active: active.size }, 'incidents loaded');
      escalate(clock.now(), true);
    },

    stop() {
      started = false;
    },

    onSignal(signal) {
      assertStarted();
      followSteps();
      if (signal.kind === 'clear') return clear(signal);
      const id = byKey.get(keyOf(signal.ruleId, scopeKeyOf(signal.scopeKey)));
      const current = id === undefined ? undefined : active.get(id);
      return current ? fold(current, signal) : open(signal);
    },

    transition(id, action, actor, note) {
      assertStarted();
      const inc = active.get(id) ?? store.get(id);
      if (!inc) throw new IncidentError('INC_ERR_NOT_FOUND', id);
      const rule = TRANSITIONS[action];
      if (!rule.from.includes(inc.status)) throw new IncidentError('INC_ERR_TRANSITION', `${action} on a ${inc.status} incident (${id}); allowed from ${rule.from.join(', ')}`);
      followSteps();
      const now = clock.now();
      const e = entry(now, ACTION_TO_TIMELINE[action], actor, note);
      const next = changed(inc, { status: rule.to, ackDeadline: null }, e, now);
      commit([{ incident: next, change: e }]);
      logger.info({ incident: id, action, status: next.status, escalationLevel: next.level }, 'incident transition');
      return next;
    },

    cancelFromDevice(deviceId, at) {
      assertStarted();
      followSteps();
      const actor = `device:${deviceId}`;
      const changes: { incident: Incident; change: IncidentChange }[] = [];
      for (const inc of active.values()) {
        if (!DEVICE_CANCELLABLE_TYPES.includes(inc.type) || !inc.deviceIds.includes(deviceId)) continue;
        // Real elapsed time: the wall time between less the clock steps since the SOS opened.
        const ageMs = at - inc.openedAt - (steps - (stepsAtOpen.get(inc.id) ?? steps));
        if (ageMs > cancelWindow) {
          logger.info({ incident: inc.id, device: deviceId, ageMs }, 'pager cancel ignored: the SOS is older than the cancel window');
          continue;
        }
        if (inc.status === 'open') {
          const e = entry(at, 'cancelled', actor, 'the resident pressed cancel');
          changes.push({ incident: changed(inc, { status: 'cancelled', ackDeadline: null }, e, at), change: e });
        } else {
          // A human has taken it: only a human calls it off. The worker sees the request.
          const e = entry(at, 'cancel_requested', actor, 'the resident pressed cancel');
          changes.push({ incident: changed(inc, {}, e, at), change: e });
        }
      }
      commit(changes);
      for (const { incident } of changes) logger.info({ incident: incident.id, device: deviceId, status: incident.status }, 'pager cancel');
      return changes.map((c) => c.incident);
    },

    tick(now) {
      assertStarted();
      followSteps();
      return escalate(now ?? clock.now(), false);
    },

    nextDeadline() {
      let next: number | undefined;
      for (const inc of active.values()) {
        if (inc.status === 'open' && inc.ackDeadline !== null && (next === undefined || inc.ackDeadline < next)) next = inc.ackDeadline;
      }
      return next;
    },

    list(query) {
      return store.list(query);
    },

    get(id) {
      return active.get(id) ?? store.get(id);
    },
  };
}
