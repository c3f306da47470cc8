import { z } from 'zod';
import { GridCodeSchema } from '../../devices/place.js';
import { SCOPES, SEVERITIES } from '../signals.js';

/**
 * The incident record, SPEC §7, plus what the city side needs to order and de-duplicate changes
 * (`gatewayId`, `version`) and to route them (`unit`). Every object is strict: a key that is not
 * listed here (a resident's name or phone slipped into a signal by a careless caller) cannot get
 * into an incident, its timeline, the store or the uplink payload.
 */

/** SPEC §7 lifecycle. */
export const INCIDENT_STATUSES = ['open', 'acknowledged', 'dispatched', 'resolved', 'closed', 'cancelled'] as const;
export type IncidentStatus = (typeof INCIDENT_STATUSES)[number];

/**
 * Statuses in which the incident is "the open incident" of its (rule, scope key): a repeat folds
 * into it. `resolved` is not active: a fire after the worker reported it handled is a new fire.
 */
export const ACTIVE_STATUSES = ['open', 'acknowledged', 'dispatched'] as const satisfies readonly IncidentStatus[];
export const TERMINAL_STATUSES = ['closed', 'cancelled'] as const satisfies readonly IncidentStatus[];

export function isActiveStatus(s: IncidentStatus): boolean {
  return (ACTIVE_STATUSES as readonly IncidentStatus[]).includes(s);
}

/** What a human (dashboard, city platform) may do to an incident (SPEC §7, §8). */
export const INCIDENT_ACTIONS = ['ack', 'dispatch', 'resolve', 'close', 'cancel'] as const;
export type IncidentAction = (typeof INCIDENT_ACTIONS)[number];

/** action → the statuses it is allowed from, and the status it leads to. */
export const TRANSITIONS: Readonly<Record<IncidentAction, { readonly from: readonly IncidentStatus[]; readonly to: IncidentStatus }>> = {
  ack: { from: ['open'], to: 'acknowledged' },
  // A dispatcher who sends someone has acknowledged it: open → dispatched is allowed.
  dispatch: { from: ['open', 'acknowledged'], to: 'dispatched' },
  resolve: { from: ['acknowledged', 'dispatched'], to: 'resolved' },
  close: { from: ['resolved'], to: 'closed' },
  // A false alarm can be called off until it is resolved; after that it was real.
  cancel: { from: ['open', 'acknowledged', 'dispatched'], to: 'cancelled' },
};

/** Timeline entries: the lifecycle's past tenses plus what the gateway itself records. */
export const TIMELINE_ACTIONS = [
  'opened',
  'repeated',
  'condition_cleared',
  'escalated',
  'acknowledged',
  'dispatched',
  'resolved',
  'closed',
  'cancelled',
  /** The resident pressed cancel after a human had taken the SOS: recorded, not obeyed. */
  'cancel_requested',
] as const;
export type TimelineAction = (typeof TIMELINE_ACTIONS)[number];

export const ACTION_TO_TIMELINE: Readonly<Record<IncidentAction, TimelineAction>> = {
  ack: 'acknowledged',
  dispatch: 'dispatched',
  resolve: 'resolved',
  close: 'closed',
  cancel: 'cancelled',
};

/** SPEC §1: the escalation ladder; `level` indexes it. */
export const LEVEL_UNITS = ['grid', 'community', 'street', 'district'] as const;
export type LevelUnit = (typeof LEVEL_UNITS)[number];
export const MAX_LEVEL = LEVEL_UNITS.length - 1;

/**
 * Repeats and clears of a flapping detector would grow the timeline (and every uplink payload,
 * which carries the whole incident) without bound. After this many `repeated` +
 * `condition_cleared` entries only `count`, `lastSeenAt` and `clearedAt` move; human actions,
 * escalations and the opening entry are always recorded.
 */
export const MAX_SIGNAL_ENTRIES = 50;

export const NOTE_MAX = 500;
export const ACTOR_MAX = 128;

const ms = () => z.number().int().nonnegative();

export const TimelineEntrySchema = z.strictObject({
  at: ms(),
  action: z.enum(TIMELINE_ACTIONS),
  /** `rule:<ruleId>`, `system`, `device:<id>`, `user:<name>`, `city:<actor>`. */
  actor: z.string().min(1).max(ACTOR_MAX),
  note: z.string().max(NOTE_MAX).optional(),
});
export type TimelineEntry = z.infer<typeof TimelineEntrySchema>;

/** Where: SPEC §1's place, strict (no resident fields), as in devices/place.ts. */
export const IncidentPlaceSchema = z.strictObject({
  grid: GridCodeSchema,
  building: z.string().max(64),
  room: z.string().max(64),
  address: z.string().max(256).optional(),
});
export type IncidentPlace = z.infer<typeof IncidentPlaceSchema>;

export const IncidentSchema = z.strictObject({
  /** `<gatewayId>-<yyyymmdd>-<seq>` (Beijing date of openedAt): unique across gateways, sortable per gateway. */
  id: z.string().min(1).max(128),
  gatewayId: z.string().min(1).max(64),
  /** 1 when opened, +1 on every change: the city side keeps the highest version it has seen. */
  version: z.number().int().min(1),
  type: z.string().min(1).max(64),
  severity: z.enum(SEVERITIES),
  status: z.enum(INCIDENT_STATUSES),
  grid: GridCodeSchema,
  place: IncidentPlaceSchema,
  deviceIds: z.array(z.string().min(1).max(64)),
  ruleId: z.string().min(1).max(128),
  scope: z.enum(SCOPES),
  /** The de-duplication key within the rule (rules/signals.ts `scopeKeyOf`). */
  scopeKey: z.string().min(1).max(256),
  /** The rule's short, non-personal description of what happened. */
  summary: z.string().max(NOTE_MAX).optional(),
  openedAt: ms(),
  /** The last raise folded in (SPEC §7 "repeats increment count and lastSeenAt"). */
  lastSeenAt: ms(),
  /** The last change of any kind (= the newest timeline entry's `at`). */
  updatedAt: ms(),
  /** When the rule's clear condition held, or null while the condition is active. */
  clearedAt: ms().nullable(),
  count: z.number().int().min(1),
  /**
   * The readings-store seq of the last reading folded in: a raise replayed for a reading already
   * counted (the rule engine re-reading its input after a restart) is not counted twice.
   */
  lastReadingSeq: z.number().int().nonnegative().optional(),
  /** 0 grid, 1 community, 2 street, 3 district. */
  level: z.number().int().min(0).max(MAX_LEVEL),
  /** The body responsible at `level` and its code (from the grid code, SPEC §1). */
  unit: z.strictObject({ kind: z.enum(LEVEL_UNITS), code: z.string().regex(/^\d{6}(?:\d{3}){0,3}$/) }),
  /** When the incident escalates unless acknowledged; null once acknowledged, at district or never (info). */
  ackDeadline: ms().nullable(),
  timeline: z.array(TimelineEntrySchema).min(1),
});
export type Incident = z.infer<typeof IncidentSchema>;

/** What `onChange` is told besides the incident: the change, shaped like its timeline entry. */
export type IncidentChange = TimelineEntry;

// ---- ids -----------------------------------------------------------------------------------

/** China has one time zone and no DST: the Beijing calendar day is UTC+8. */
const BEIJING_OFFSET_MS = 8 * 3_600_000;
export const ID_SEQ_DIGITS = 6;

/** `20241204` for a gateway time, on the Beijing calendar (what an operator reads off the id). */
export function beijingDay(at: number): string {
  const d = new Date(at + BEIJING_OFFSET_MS);
  const mm = String(d.getUTCMonth() + 1).padStart(2, '0');
  const dd = String(d.getUTCDate()).padStart(2, '0');
  return `${String(d.getUTCFullYear()).padStart(4, '0')}${mm}${dd}`;
}

export function formatIncidentId(gatewayId: string, day: string, seq: number): string {
  return `${gatewayId}-${day}-${String(seq).padStart(ID_SEQ_DIGITS, '0')}`;
}

const ID_RE = /^(.+)-(\d{8})-(\d{6,})$/;

/**
 * The parts of an incident id, parsed from the end, so that gateway ids containing `-`
 * (`gw-1` and `gw-1-x`) are never confused. Undefined for anything that is not an incident id.
 */
export function parseIncidentId(id: string): { gatewayId: string; day: string; seq: number } | undefined {
  const m = ID_RE.exec(id);
  if (!m) return undefined;
  return { gatewayId: m[1] as string, day: m[2] as string, seq: Number(m[3]) };
}
