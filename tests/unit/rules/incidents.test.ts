import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  INCIDENT_ACTIONS,
  INCIDENT_STATUSES,
  IncidentSchema,
  MAX_SIGNAL_ENTRIES,
  TRANSITIONS,
  beijingDay,
  createIncidentManager,
  isIncidentError,
  openIncidentStore,
  parseIncidentId,
  redactPersonalData,
  redactorFor,
  type EscalationDelays,
  type Incident,
  type IncidentAction,
  type IncidentChange,
  type IncidentManager,
  type IncidentStatus,
  type IncidentStore,
} from '../../../rules/incidents/index.js';
import type { RuleSignal } from '../../../rules/signals.js';

// ---- fixtures --------------------------------------------------------------------------------

const GW = 'gw-dhs-07';
const GRID = '110101013001002';
const T0 = Date.UTC(2024, 11, 4, 2, 0, 0); // 2024-12-04 10:00 in Beijing
const ESCALATION: EscalationDelays = { critical: 60_000, major: 300_000, minor: 1_800_000, info: null };

type Raise = Extract<RuleSignal, { kind: 'raise' }>;

function raise(over: Partial<Raise> = {}): Raise {
  return {
    kind: 'raise',
    ruleId: 'sos',
    type: 'sos',
    severity: 'critical',
    scope: 'device',
    scopeKey: 'PGR-0001',
    grid: GRID,
    place: { grid: GRID, building: '5', room: '302' },
    deviceIds: ['PGR-0001'],
    at: T0,
    ...over,
  };
}

function clear(over: Partial<Extract<RuleSignal, { kind: 'clear' }>> = {}): RuleSignal {
  return { kind: 'clear', ruleId: 'sos', scopeKey: 'PGR-0001', at: T0 + 1_000, ...over };
}

const silent = { info: () => {}, warn: () => {}, error: () => {} };

interface Harness {
  dir: string;
  clock: { now: () => number; set(t: number): void; advance(ms: number): void };
  store: IncidentStore;
  manager: IncidentManager;
  changes: { incident: Incident; change: IncidentChange }[];
  logs: { level: string; obj: object; msg: string | undefined }[];
  /** Close the store and open a new one (and a new manager) on the same file: a restart. */
  restart(): void;
  close(): void;
}

function harness(opts: { escalation?: EscalationDelays; start?: boolean } = {}): Harness {
  const dir = mkdtempSync(join(tmpdir(), 'gridedge-incidents-'));
  let t = T0;
  const clock = { now: () => t, set: (v: number) => void (t = v), advance: (ms: number) => void (t += ms) };
  const changes: Harness['changes'] = [];
  const logs: Harness['logs'] = [];
  const logger = {
    info: (obj: object, msg?: string) => logs.push({ level: 'info', obj, msg }),
    warn: (obj: object, msg?: string) => logs.push({ level: 'warn', obj, msg }),
    error: (obj: object, msg?: string) => logs.push({ level: 'error', obj, msg }),
  };
  const make = (): { store: IncidentStore; manager: IncidentManager } => {
    const store = openIncidentStore({ dataDir: dir, logger });
    const manager = createIncidentManager({
      gatewayId: GW,
      store,
      clock,
      logger,
      escalation: opts.escalation ?? ESCALATION,
      onChange: (incident, change) => changes.push({ incident, change }),
    });
    if (opts.start !== false) manager.start();
    return { store, manager };
  };
  const h: Harness = {
    dir,
    clock,
    changes,
    logs,
    ...make(),
    restart() {
      h.store.close();
      Object.assign(h, make());
    },
    close() {
      h.store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return h;
}

function expectIncidentError(fn: () => unknown, code: string): void {
  let thrown: unknown;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  expect(isIncidentError(thrown), `expected an IncidentError ${code}, got ${String(thrown)}`).toBe(true);
  expect((thrown as { code: string }).code).toBe(code);
}

/** Drives a fresh incident into `status` through allowed transitions. */
function driveTo(h: Harness, status: IncidentStatus, scopeKey = 'PGR-0001'): Incident {
  const inc = h.manager.onSignal(raise({ scopeKey, deviceIds: [scopeKey] })) as Incident;
  const path: Record<IncidentStatus, IncidentAction[]> = {
    open: [],
    acknowledged: ['ack'],
    dispatched: ['ack', 'dispatch'],
    resolved: ['ack', 'resolve'],
    closed: ['ack', 'resolve', 'close'],
    cancelled: ['cancel'],
  };
  let cur = inc;
  for (const a of path[status]) cur = h.manager.transition(inc.id, a, 'user:wang');
  expect(cur.status).toBe(status);
  return cur;
}

// ---- tests -----------------------------------------------------------------------------------

describe('incident ids', () => {
  it('are <gatewayId>-<Beijing yyyymmdd>-<seq>, parsed from the end', () => {
    // 2024-12-04 20:00 UTC is already 12-05 in Beijing.
    expect(beijingDay(Date.UTC(2024, 11, 4, 20))).toBe('20241205');
    expect(beijingDay(Date.UTC(2024, 11, 4, 15, 59, 59))).toBe('20241204');
    expect(parseIncidentId('gw-1-x-20241204-000001')).toEqual({ gatewayId: 'gw-1-x', day: '20241204', seq: 1 });
    expect(parseIncidentId('gw-1-20241204-1234567')?.gatewayId).toBe('gw-1');
    expect(parseIncidentId('nonsense')).toBeUndefined();
  });

  it('are unique and sortable, and survive a restart without reuse', () => {
    const h = harness();
    try {
      const a = h.manager.onSignal(raise({ scopeKey: 'A' })) as Incident;
      const b = h.manager.onSignal(raise({ scopeKey: 'B' })) as Incident;
      expect(a.id).toBe(`${GW}-20241204-000001`);
      expect(b.id).toBe(`${GW}-20241204-000002`);
      h.restart();
      const c = h.manager.onSignal(raise({ scopeKey: 'C' })) as Incident;
      expect(c.id).toBe(`${GW}-20241204-000003`);
      expect([c.id, a.id, b.id].sort()).toEqual([a.id, b.id, c.id]);
    } finally {
      h.close();
    }
  });
});

describe('opening and folding', () => {
  let h: Harness;
  beforeEach(() => {
    h = harness();
  });
  afterEach(() => h.close());

  it('opens an incident with every SPEC §7 field, persisted before onChange', () => {
    const seen: Incident[] = [];
    const inc = h.manager.onSignal(raise({ summary: 'SOS pressed' })) as Incident;
    seen.push(...h.changes.map((c) => c.incident));
    expect(IncidentSchema.parse(inc)).toEqual(inc);
    expect(inc).toMatchObject({
      gatewayId: GW,
      version: 1,
      type: 'sos',
      severity: 'critical',
      status: 'open',
      grid: GRID,
      place: { grid: GRID, building: '5', room: '302' },
      deviceIds: ['PGR-0001'],
      ruleId: 'sos',
      openedAt: T0,
      lastSeenAt: T0,
      count: 1,
      level: 0,
      unit: { kind: 'grid', code: GRID },
      ackDeadline: T0 + 60_000,
      clearedAt: null,
    });
    expect(inc.timeline).toEqual([{ at: T0, action: 'opened', actor: 'rule:sos', note: 'SOS pressed' }]);
    expect(h.changes).toHaveLength(1);
    expect(h.changes[0]?.change.action).toBe('opened');
    // The store and the outbox had it when onChange ran.
    expect(h.store.get(inc.id)).toEqual(inc);
    const rows = h.store.outbox.readAfter(0, 10);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ incidentId: inc.id, version: 1, grid: GRID });
    expect(JSON.parse((rows[0] as { payload: string }).payload)).toEqual(inc);
  });

  it('onChange runs after the commit: the store already holds the version it is told of', () => {
    const store = h.store;
    const seenInStore: (number | undefined)[] = [];
    const m = createIncidentManager({
      gatewayId: GW,
      store,
      clock: h.clock,
      logger: silent,
      escalation: ESCALATION,
      onChange: (inc) => {
        seenInStore.push(store.get(inc.id)?.version);
        throw new Error('a listener bug must not undo or block anything');
      },
    });
    m.start();
    const inc = m.onSignal(raise({ scopeKey: 'X' })) as Incident;
    m.transition(inc.id, 'ack', 'user:wang');
    expect(seenInStore).toEqual([1, 2]);
    expect(store.get(inc.id)?.status).toBe('acknowledged');
  });

  it('folds repeats into the one open incident of (rule, scope key)', () => {
    const a = h.manager.onSignal(raise()) as Incident;
    const b = h.manager.onSignal(raise({ at: T0 + 5_000, deviceIds: ['PGR-0001', 'PGR-0002'] })) as Incident;
    expect(b.id).toBe(a.id);
    expect(b).toMatchObject({ count: 2, lastSeenAt: T0 + 5_000, version: 2, openedAt: T0, deviceIds: ['PGR-0001', 'PGR-0002'] });
    expect(b.timeline.map((e) => e.action)).toEqual(['opened', 'repeated']);
    // Another scope key, or another rule with the same key, is another incident.
    const c = h.manager.onSignal(raise({ scopeKey: 'PGR-0009' })) as Incident;
    const d = h.manager.onSignal(raise({ ruleId: 'sos-2' })) as Incident;
    expect(new Set([a.id, c.id, d.id]).size).toBe(3);
    expect(h.manager.list({ status: 'open' })).toHaveLength(3);
  });

  it('folds into an acknowledged or dispatched incident, but a resolved one is history: a new raise opens anew', () => {
    const a = h.manager.onSignal(raise()) as Incident;
    h.manager.transition(a.id, 'ack', 'user:wang');
    expect(h.manager.onSignal(raise({ at: T0 + 1 }))?.id).toBe(a.id);
    h.manager.transition(a.id, 'dispatch', 'user:wang');
    const folded = h.manager.onSignal(raise({ at: T0 + 2 })) as Incident;
    expect(folded).toMatchObject({ id: a.id, count: 3, status: 'dispatched', ackDeadline: null });
    h.manager.transition(a.id, 'resolve', 'user:wang');
    const fresh = h.manager.onSignal(raise({ at: T0 + 3 })) as Incident;
    expect(fresh.id).not.toBe(a.id);
    expect(fresh).toMatchObject({ status: 'open', count: 1, version: 1 });
  });

  it('a clear records condition_cleared and resolves nothing; a raise after the clear folds into the same incident', () => {
    const a = h.manager.onSignal(raise()) as Incident;
    const c = h.manager.onSignal(clear()) as Incident;
    expect(c).toMatchObject({ id: a.id, status: 'open', clearedAt: T0 + 1_000, ackDeadline: a.ackDeadline });
    expect(c.timeline.at(-1)).toMatchObject({ action: 'condition_cleared', actor: 'rule:sos' });
    // A second clear says nothing new.
    const before = h.changes.length;
    h.manager.onSignal(clear({ at: T0 + 2_000 }));
    expect(h.changes).toHaveLength(before);
    const r = h.manager.onSignal(raise({ at: T0 + 3_000 })) as Incident;
    expect(r).toMatchObject({ id: a.id, count: 2, clearedAt: null });
    expect(r.timeline.at(-1)).toMatchObject({ action: 'repeated', note: 'condition returned' });
    // A clear without an open incident is ignored.
    expect(h.manager.onSignal(clear({ scopeKey: 'nothing' }))).toBeUndefined();
  });

  it('a replayed reading (same readingSeq) is not counted twice', () => {
    h.manager.onSignal(raise({ readingSeq: 10 }));
    h.manager.onSignal(raise({ readingSeq: 11, at: T0 + 1 }));
    const again = h.manager.onSignal(raise({ readingSeq: 11, at: T0 + 1 })) as Incident;
    expect(again.count).toBe(2);
  });

  it('a worse severity from the same rule and scope upgrades the incident and its deadline', () => {
    const a = h.manager.onSignal(raise({ ruleId: 'overheat', type: 'electrical.overheat', severity: 'minor' })) as Incident;
    expect(a.ackDeadline).toBe(T0 + 1_800_000);
    const b = h.manager.onSignal(raise({ ruleId: 'overheat', type: 'electrical.overheat', severity: 'major', at: T0 + 10_000 })) as Incident;
    expect(b).toMatchObject({ severity: 'major', ackDeadline: T0 + 10_000 + 300_000 });
  });

  it('bounds the timeline of a flapping detector but keeps counting', () => {
    h.manager.onSignal(raise());
    for (let i = 1; i <= 200; i++) {
      h.manager.onSignal(raise({ at: T0 + i * 1_000 }));
    }
    const inc = h.manager.list()[0] as Incident;
    expect(inc.count).toBe(201);
    expect(inc.lastSeenAt).toBe(T0 + 200_000);
    expect(inc.timeline.filter((e) => e.action === 'repeated')).toHaveLength(MAX_SIGNAL_ENTRIES);
    expect(inc.version).toBe(201);
  });

  it('refuses signals before start()', () => {
    const cold = harness({ start: false });
    try {
      expectIncidentError(() => cold.manager.onSignal(raise()), 'INC_ERR_NOT_STARTED');
    } finally {
      cold.close();
    }
  });
});

describe('transitions', () => {
  let h: Harness;
  beforeEach(() => {
    h = harness();
  });
  afterEach(() => h.close());

  const cases = INCIDENT_STATUSES.flatMap((status) => INCIDENT_ACTIONS.map((action) => ({ status, action, allowed: TRANSITIONS[action].from.includes(status) })));

  it('the table is what docs/UPLINK.md says', () => {
    const allowed = cases.filter((c) => c.allowed).map((c) => `${c.status}:${c.action}`);
    expect(allowed.sort()).toEqual(
      ['open:ack', 'open:dispatch', 'open:cancel', 'acknowledged:dispatch', 'acknowledged:resolve', 'acknowledged:cancel', 'dispatched:resolve', 'dispatched:cancel', 'resolved:close'].sort(),
    );
  });

  it.each(cases)('$action from $status: allowed=$allowed', ({ status, action, allowed }) => {
    const inc = driveTo(h, status);
    h.clock.advance(5_000);
    if (allowed) {
      const next = h.manager.transition(inc.id, action, 'user:wang', 'on my way');
      expect(next.status).toBe(TRANSITIONS[action].to);
      expect(next.version).toBe(inc.version + 1);
      expect(next.ackDeadline).toBeNull();
      expect(next.timeline.at(-1)).toEqual({ at: h.clock.now(), action: expect.any(String) as string, actor: 'user:wang', note: 'on my way' });
      expect(h.store.get(inc.id)).toEqual(next);
    } else {
      expectIncidentError(() => h.manager.transition(inc.id, action, 'user:wang'), 'INC_ERR_TRANSITION');
      expect(h.store.get(inc.id)).toEqual(inc);
    }
  });

  it('an unknown id is INC_ERR_NOT_FOUND', () => {
    expectIncidentError(() => h.manager.transition(`${GW}-20241204-999999`, 'ack', 'user:wang'), 'INC_ERR_NOT_FOUND');
  });

  it('closed and cancelled incidents stay in the store and can be listed and fetched', () => {
    const a = driveTo(h, 'closed', 'A');
    const b = driveTo(h, 'cancelled', 'B');
    h.restart();
    expect(h.manager.get(a.id)?.status).toBe('closed');
    expect(h.manager.list({ status: ['closed', 'cancelled'] }).map((i) => i.id).sort()).toEqual([a.id, b.id].sort());
    expect(h.manager.list({ grid: '110101013001099' })).toEqual([]);
    expect(h.manager.list({ since: h.clock.now() + 1 })).toEqual([]);
  });
});

describe('escalation', () => {
  let h: Harness;
  beforeEach(() => {
    h = harness();
  });
  afterEach(() => h.close());

  it('critical: 60 s → community, 120 s → street, 180 s → district, then stops', () => {
    const inc = h.manager.onSignal(raise()) as Incident;
    expect(h.manager.nextDeadline()).toBe(T0 + 60_000);
    expect(h.manager.tick(T0 + 59_999)).toEqual([]);
    const l1 = h.manager.tick(T0 + 60_000);
    expect(l1).toHaveLength(1);
    expect(l1[0]).toMatchObject({ id: inc.id, level: 1, unit: { kind: 'community', code: '110101013001' }, ackDeadline: T0 + 120_000 });
    expect(h.changes.at(-1)?.change).toMatchObject({ action: 'escalated', actor: 'system', note: 'to community 110101013001' });
    expect(h.manager.tick(T0 + 119_000)).toEqual([]);
    expect(h.manager.tick(T0 + 120_000)[0]).toMatchObject({ level: 2, unit: { kind: 'street', code: '110101013' }, ackDeadline: T0 + 180_000 });
    expect(h.manager.tick(T0 + 180_000)[0]).toMatchObject({ level: 3, unit: { kind: 'district', code: '110101' }, ackDeadline: null });
    expect(h.manager.tick(T0 + 10 * 60_000)).toEqual([]);
    expect(h.manager.get(inc.id)?.timeline.filter((e) => e.action === 'escalated')).toHaveLength(3);
    expect(h.manager.nextDeadline()).toBeUndefined();
  });

  it('one level per deadline even when the tick is late', () => {
    h.manager.onSignal(raise());
    const late = h.manager.tick(T0 + 10 * 60_000);
    expect(late).toHaveLength(1);
    expect(late[0]).toMatchObject({ level: 1, ackDeadline: T0 + 11 * 60_000 });
  });

  it('acknowledgement stops it', () => {
    const inc = h.manager.onSignal(raise()) as Incident;
    h.manager.tick(T0 + 60_000);
    h.clock.set(T0 + 90_000);
    const acked = h.manager.transition(inc.id, 'ack', 'user:wang');
    expect(acked).toMatchObject({ level: 1, ackDeadline: null });
    expect(h.manager.tick(T0 + 60 * 60_000)).toEqual([]);
    expect(h.manager.get(inc.id)?.level).toBe(1);
  });

  it('major after 5 min, minor after 30 min; info never', () => {
    const major = h.manager.onSignal(raise({ ruleId: 'leak', type: 'electrical.leakage', severity: 'major' })) as Incident;
    const minor = h.manager.onSignal(raise({ ruleId: 'batt', type: 'device.battery_low', severity: 'minor' })) as Incident;
    const info = h.manager.onSignal(raise({ ruleId: 'svc', type: 'service_call', severity: 'info' })) as Incident;
    expect(info.ackDeadline).toBeNull();
    expect(h.manager.tick(T0 + 300_000 - 1)).toEqual([]);
    expect(h.manager.tick(T0 + 300_000).map((i) => i.id)).toEqual([major.id]);
    expect(h.manager.tick(T0 + 1_800_000).map((i) => i.id).sort()).toEqual([major.id, minor.id].sort());
    h.manager.tick(T0 + 365 * 86_400_000);
    expect(h.manager.get(info.id)?.level).toBe(0);
  });

  it('configurable, and null never escalates', () => {
    const fast = harness({ escalation: { critical: null, major: 1_000, minor: null, info: null } });
    try {
      const c = fast.manager.onSignal(raise()) as Incident;
      expect(c.ackDeadline).toBeNull();
      expect(fast.manager.tick(T0 + 86_400_000)).toEqual([]);
    } finally {
      fast.close();
    }
  });

  it('a cleared but unacknowledged incident keeps escalating', () => {
    h.manager.onSignal(raise());
    h.manager.onSignal(clear());
    expect(h.manager.tick(T0 + 60_000)[0]?.level).toBe(1);
  });

  it('persistence: restart mid-escalation with the deadline passed while down → escalates exactly once at start', () => {
    const inc = h.manager.onSignal(raise()) as Incident;
    h.manager.tick(T0 + 60_000); // level 1, deadline T0 + 120 s
    const rowsBefore = h.store.outbox.stats().lastSeq;
    // Down from T0 + 70 s to T0 + 10 min: the level-2 deadline passed meanwhile.
    h.clock.set(T0 + 10 * 60_000);
    h.changes.length = 0;
    h.restart();
    const after = h.manager.get(inc.id) as Incident;
    expect(after).toMatchObject({ level: 2, ackDeadline: T0 + 11 * 60_000 });
    expect(after.timeline.at(-1)?.note).toContain('while the gateway was down');
    expect(h.changes.map((c) => c.change.action)).toEqual(['escalated']);
    expect(h.store.outbox.stats().lastSeq).toBe(rowsBefore + 1);
    // Starting again (another restart at the same time) does not escalate again.
    h.restart();
    expect(h.manager.get(inc.id)?.level).toBe(2);
    expect(h.changes).toHaveLength(1);
    // Folding still finds the reloaded incident.
    expect(h.manager.onSignal(raise({ at: h.clock.now() }))?.id).toBe(inc.id);
    // And the ladder goes on from there.
    expect(h.manager.tick(T0 + 11 * 60_000)[0]?.level).toBe(3);
  });

  it('an acknowledged incident reloaded after a restart does not escalate', () => {
    const inc = h.manager.onSignal(raise()) as Incident;
    h.manager.transition(inc.id, 'ack', 'user:wang');
    h.clock.set(T0 + 3_600_000);
    h.restart();
    expect(h.manager.get(inc.id)).toMatchObject({ level: 0, status: 'acknowledged' });
  });
});

describe('pager cancel (SPEC §7)', () => {
  let h: Harness;
  beforeEach(() => {
    h = harness();
  });
  afterEach(() => h.close());

  it('cancels that resident’s open SOS raised within 2 minutes, keeping the record', () => {
    const sos = h.manager.onSignal(raise()) as Incident;
    const other = h.manager.onSignal(raise({ scopeKey: 'PGR-0002', deviceIds: ['PGR-0002'] })) as Incident;
    const fall = h.manager.onSignal(raise({ ruleId: 'fall', type: 'fall' })) as Incident;
    const changed = h.manager.cancelFromDevice('PGR-0001', T0 + 120_000);
    expect(changed.map((i) => i.id)).toEqual([sos.id]);
    const cancelled = h.manager.get(sos.id) as Incident;
    expect(cancelled).toMatchObject({ status: 'cancelled', ackDeadline: null });
    expect(cancelled.timeline.at(-1)).toMatchObject({ action: 'cancelled', actor: 'device:PGR-0001' });
    expect(h.manager.get(other.id)?.status).toBe('open');
    expect(h.manager.get(fall.id)?.status).toBe('open');
    expect(h.manager.tick(T0 + 60 * 60_000).map((i) => i.id)).not.toContain(sos.id);
  });

  it('does not cancel after 2 minutes', () => {
    const sos = h.manager.onSignal(raise()) as Incident;
    expect(h.manager.cancelFromDevice('PGR-0001', T0 + 120_001)).toEqual([]);
    expect(h.manager.get(sos.id)?.status).toBe('open');
  });

  it('an SOS a human has taken is not cancelled by the pager, only annotated', () => {
    const sos = h.manager.onSignal(raise()) as Incident;
    h.manager.transition(sos.id, 'ack', 'user:wang');
    const [changed] = h.manager.cancelFromDevice('PGR-0001', T0 + 30_000);
    expect(changed).toMatchObject({ status: 'acknowledged' });
    expect(changed?.timeline.at(-1)).toMatchObject({ action: 'cancel_requested', actor: 'device:PGR-0001' });
  });
});

describe('residents’ personal data', () => {
  it('the default redactor catches phone and ID numbers but not grid codes or timestamps', () => {
    expect(redactPersonalData('call 13812345678 or 138-1234-5678, +86 139 1234 5678')).toBe('call [redacted] or [redacted], [redacted]');
    expect(redactPersonalData('home 010-65123456')).toBe('home [redacted]');
    expect(redactPersonalData('id 11010119400101123X')).toBe('id [redacted]');
    expect(redactPersonalData(`grid ${GRID} at ${T0}`)).toBe(`grid ${GRID} at ${T0}`);
  });

  it('never reaches an incident, its timeline, the outbox or the logs (property)', () => {
    const h = harness();
    const names = ['张秀英', '王建国', 'Li Wei'];
    const redact = redactorFor(names);
    const logs: unknown[] = [];
    const logger = { info: (...a: unknown[]) => logs.push(a), warn: (...a: unknown[]) => logs.push(a), error: (...a: unknown[]) => logs.push(a) };
    const m = createIncidentManager({ gatewayId: GW, store: h.store, clock: h.clock, logger, escalation: ESCALATION, redact });
    m.start();
    const phone = fc.tuple(fc.constantFrom('13', '15', '18', '19'), fc.stringMatching(/^\d{9}$/)).map(([a, b]) => a + b);
    let n = 0;
    try {
      fc.assert(
        fc.property(phone, fc.constantFrom(...names), fc.string({ maxLength: 20 }), (tel, name, free) => {
          n++;
          // A careless caller puts resident fields everywhere it can.
          const sloppy = {
            ...raise({ scopeKey: `K${n}`, summary: `${free} resident ${name} ${tel}`, at: T0 + n }),
            resident_name: name,
            resident_phone: tel,
            place: { grid: GRID, building: '5', room: '302', resident_name: name, phone: tel },
          } as unknown as RuleSignal;
          const inc = m.onSignal(sloppy) as Incident;
          m.transition(inc.id, 'ack', `user:${name}`, `talked to ${name} on ${tel}`);
          const stored = JSON.stringify(m.get(inc.id));
          const rows = h.store.outbox.readAfter(0, 1_000_000).filter((r) => r.incidentId === inc.id).map((r) => r.payload).join('\n');
          for (const text of [stored, rows, JSON.stringify(logs)]) {
            expect(text).not.toContain(tel);
            expect(text).not.toContain(name);
          }
          expect(Object.keys(inc)).not.toContain('resident_name');
          expect(Object.keys(inc.place).sort()).toEqual(['building', 'grid', 'room']);
          expect(logs.length).toBeGreaterThan(0);
        }),
        { numRuns: 60 },
      );
    } finally {
      h.close();
    }
  });

  it('free-text places are redacted, and folding still works across a restart', () => {
    const h = harness();
    try {
      const room = '王大爷家 13812345678';
      const sig = raise({ scope: 'room', scopeKey: `${GRID}/7/${room}`, place: { grid: GRID, building: '7', room } });
      const inc = h.manager.onSignal(sig) as Incident;
      expect(inc.place.room).toBe('王大爷家 [redacted]');
      expect(inc.scopeKey).toBe(`${GRID}/7/王大爷家 [redacted]`);
      h.restart();
      expect(h.manager.onSignal({ ...sig, at: T0 + 1 })).toMatchObject({ id: inc.id, count: 2 });
    } finally {
      h.close();
    }
  });

  it('the schema refuses an incident with extra keys', () => {
    const h = harness();
    try {
      const inc = h.manager.onSignal(raise()) as Incident;
      expect(IncidentSchema.safeParse({ ...inc, residentPhone: '13812345678' }).success).toBe(false);
      expect(IncidentSchema.safeParse({ ...inc, place: { ...inc.place, resident_name: 'x' } }).success).toBe(false);
    } finally {
      h.close();
    }
  });
});

describe('the store', () => {
  it('runs WAL with synchronous=FULL in incidents.db, and one active incident per (rule, scope key) is a database invariant', async () => {
    const h = harness();
    try {
      const Database = (await import('better-sqlite3')).default;
      const db = new Database(join(h.dir, 'incidents.db'));
      expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
      db.close();
      const inc = h.manager.onSignal(raise()) as Incident;
      // A second active incident with the same key, bypassing the manager, is refused.
      expect(() => h.store.appendChange({ ...inc, id: `${GW}-20241204-000099` })).toThrow(/UNIQUE/);
      // A stale version (lost update) is refused too.
      expect(() => h.store.appendChange({ ...inc, version: 5 })).toThrow(/version/);
    } finally {
      h.close();
    }
  });

  it('without an uplink the store keeps no outbox, and incidents all the same', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gridedge-incidents-'));
    const store = openIncidentStore({ dataDir: dir, logger: silent, outbox: false });
    try {
      const m = createIncidentManager({ gatewayId: GW, store, clock: { now: () => T0 }, logger: silent, escalation: ESCALATION });
      m.start();
      const inc = m.onSignal(raise()) as Incident;
      expect(store.get(inc.id)).toEqual(inc);
      expect(store.outbox.stats()).toMatchObject({ depth: 0, lastSeq: 0 });
    } finally {
      store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('each consumer of the change log has its own cursor; a row goes once every consumer is past it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gridedge-incidents-'));
    const SINK = 'sink:influxdb1:http://127.0.0.1:8086/gridedge';
    let store = openIncidentStore({ dataDir: dir, logger: silent, consumers: ['uplink', SINK] });
    try {
      const m = createIncidentManager({ gatewayId: GW, store, clock: { now: () => T0 }, logger: silent, escalation: ESCALATION });
      m.start();
      m.onSignal(raise({ scopeKey: 'A' }));
      m.onSignal(raise({ scopeKey: 'B' }));
      store.outbox.ack(2);
      // The uplink is done; the sink has read nothing yet, so both rows stay for it.
      expect(store.outbox.stats()).toMatchObject({ depth: 0, cursor: 2 });
      const sink = store.outboxFor(SINK);
      expect(sink.readAfter(sink.cursor(), 10).map((r) => r.seq)).toEqual([1, 2]);
      sink.ack(1);
      expect(sink.stats()).toMatchObject({ depth: 1, cursor: 1 });
      expect(() => store.outboxFor('sink:influxdb2:elsewhere')).toThrow(/not a consumer/);
      // A reader that names no consumers changes no cursor.
      openIncidentStore({ dataDir: dir, logger: silent, outbox: false }).close();
      store.close();
      store = openIncidentStore({ dataDir: dir, logger: silent, consumers: ['uplink', SINK] });
      expect(store.outboxFor(SINK).readAfter(store.outboxFor(SINK).cursor(), 10).map((r) => r.seq)).toEqual([2]);
      // The sink is removed from the config: its cursor goes, and with it the rows it held.
      store.close();
      store = openIncidentStore({ dataDir: dir, logger: silent, consumers: ['uplink'] });
      expect(store.outbox.readAfter(0, 10)).toEqual([]);
    } finally {
      store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the outbox cursor only moves forward, deletes delivered rows, and seqs are never reused', () => {
    const h = harness();
    try {
      h.manager.onSignal(raise({ scopeKey: 'A' }));
      h.manager.onSignal(raise({ scopeKey: 'B' }));
      const { outbox } = h.store;
      expect(outbox.stats()).toMatchObject({ depth: 2, cursor: 0, lastSeq: 2, oldestCreatedAt: T0 });
      outbox.ack(2);
      outbox.ack(1);
      expect(outbox.stats()).toMatchObject({ depth: 0, cursor: 2 });
      expect(() => outbox.ack(3)).toThrow(/never written/);
      h.restart();
      h.manager.onSignal(raise({ scopeKey: 'C' }));
      expect(h.store.outbox.readAfter(h.store.outbox.cursor(), 10).map((r) => r.seq)).toEqual([3]);
    } finally {
      h.close();
    }
  });
});
