import type { Place } from '../devices/place.js';

/** SPEC §6: what a rule correlates over, and what makes two raises "the same incident". */
export const SCOPES = ['device', 'room', 'building', 'grid'] as const;
export type Scope = (typeof SCOPES)[number];

export const SEVERITIES = ['critical', 'major', 'minor', 'info'] as const;
export type Severity = (typeof SEVERITIES)[number];

/**
 * What the rule engine tells the incident manager. The engine decides *that* a condition holds;
 * the manager decides what that means for incidents (open, fold a repeat, clear).
 */
export type RuleSignal =
  | {
      readonly kind: 'raise';
      readonly ruleId: string;
      /** Incident type, e.g. `electrical.short_circuit` (SPEC §6). */
      readonly type: string;
      readonly severity: Severity;
      readonly scope: Scope;
      /** De-duplication key within the rule: the device id, or the place at the rule's scope. */
      readonly scopeKey: string;
      readonly grid: string;
      readonly place: Place;
      readonly deviceIds: readonly string[];
      /** Gateway time the condition became true (the triggering reading's receivedAt, or a timer's time). */
      readonly at: number;
      /** The store seq of the reading that triggered it, when a reading did. */
      readonly readingSeq?: number;
      /** Short, safe to log and send upstream: never residents' personal data. */
      readonly summary?: string;
    }
  | {
      readonly kind: 'clear';
      readonly ruleId: string;
      readonly scopeKey: string;
      readonly at: number;
    };

/** The scope key of a place at a scope: `110101013001002/7/B1-3` for a room. */
export function scopeKeyOf(scope: Scope, deviceId: string, place: Place): string {
  switch (scope) {
    case 'device':
      return deviceId;
    case 'room':
      return `${place.grid}/${place.building}/${place.room}`;
    case 'building':
      return `${place.grid}/${place.building}`;
    case 'grid':
      return place.grid;
  }
}
