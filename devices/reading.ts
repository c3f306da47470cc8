import { z } from 'zod';
import { PlaceSchema } from './place.js';
import { KINDS, SERVICES, VOCABULARY, isAlarmEvent } from './vocabulary.js';

/** Device time is trusted only within ±24 h of the gateway clock (SPEC §2). */
export const MAX_CLOCK_SKEW_MS = 24 * 60 * 60 * 1000;

const ReadingShape = z.object({
  deviceId: z.string().min(1).max(64),
  model: z.string().min(1),
  kind: z.enum(KINDS),
  ts: z.number().int().nonnegative(),
  receivedAt: z.number().int().nonnegative(),
  metrics: z.record(z.string(), z.number().finite()),
  state: z.record(z.string(), z.boolean()),
  events: z.array(z.string()),
  /** Only on readings whose events include `service_call` (SPEC §2). */
  service: z.enum(SERVICES).optional(),
  place: PlaceSchema,
});

/** The one reading every model normalises to (SPEC §2), checked against its kind's vocabulary. */
export const ReadingSchema = ReadingShape.superRefine((r, ctx) => {
  const vocab = VOCABULARY[r.kind];
  for (const key of Object.keys(r.metrics)) {
    if (!vocab.metrics.includes(key)) {
      ctx.addIssue({ code: 'custom', path: ['metrics', key], message: `not a ${r.kind} metric` });
    }
  }
  for (const key of Object.keys(r.state)) {
    if (!vocab.states.includes(key)) {
      ctx.addIssue({ code: 'custom', path: ['state', key], message: `not a ${r.kind} state flag` });
    }
  }
  r.events.forEach((event, i) => {
    if (!vocab.events.includes(event)) {
      ctx.addIssue({ code: 'custom', path: ['events', i], message: `not a ${r.kind} event` });
    }
  });
});
export type Reading = z.infer<typeof ReadingShape>;

/** What a codec produces: a reading before the registry has put it at its place. */
export type ReadingDraft = Omit<Reading, 'place'>;

/** SPEC §2: the device's own time when it is plausible, else the time we received it. */
export function chooseTimestamp(deviceTs: number | undefined, receivedAt: number): number {
  if (deviceTs === undefined || !Number.isSafeInteger(deviceTs) || deviceTs < 0) return receivedAt;
  return Math.abs(deviceTs - receivedAt) <= MAX_CLOCK_SKEW_MS ? deviceTs : receivedAt;
}

/** True when the reading must go through the alarm lane. */
export function isAlarmReading(r: Pick<Reading, 'events'>): boolean {
  return r.events.some(isAlarmEvent);
}
