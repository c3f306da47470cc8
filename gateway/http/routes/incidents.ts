import { z } from 'zod';
import { INCIDENT_ACTIONS, INCIDENT_STATUSES, NOTE_MAX, isIncidentError, type Incident, type IncidentManager, type IncidentQuery } from '../../../rules/incidents/index.js';
import { canSeeGrid, seesAllGrids, type HttpUser } from '../auth.js';
import { HttpError } from '../errors.js';
import { queryObject, timeParam, validate, type Route } from '../router.js';
import { GridCodeSchema } from '../../../devices/place.js';

export type IncidentApi = Pick<IncidentManager, 'list' | 'get' | 'transition'>;

const ListQuerySchema = z.strictObject({
  /** One status or several, comma-separated. */
  status: z
    .string()
    .transform((s) => s.split(','))
    .pipe(z.array(z.enum(INCIDENT_STATUSES)).min(1))
    .optional(),
  grid: GridCodeSchema.optional(),
  since: timeParam().optional(),
  limit: z.coerce.number().int().min(1).max(5000).optional(),
});

const ActionBodySchema = z.strictObject({ note: z.string().max(NOTE_MAX).optional() });
const ActionSchema = z.enum(INCIDENT_ACTIONS);

function need(user: HttpUser | undefined): HttpUser {
  if (!user) throw new HttpError('HTTP_ERR_UNAUTHORIZED');
  return user;
}

/** The incident if it exists and the user may see it: 404 / 403 (with no data) otherwise. */
function visible(manager: IncidentApi, user: HttpUser, id: string): Incident {
  const incident = manager.get(id);
  if (!incident) throw new HttpError('HTTP_ERR_NOT_FOUND', 'no incident with that id');
  if (!canSeeGrid(user, incident.grid)) throw new HttpError('HTTP_ERR_FORBIDDEN');
  return incident;
}

/** SPEC §8 incidents. Incidents never carry residents' data (their schema is strict). */
export function incidentRoutes(deps: { manager: IncidentApi }): Route[] {
  const { manager } = deps;
  return [
    {
      method: 'GET',
      path: '/api/incidents',
      auth: 'user',
      handle({ user, query }) {
        const u = need(user);
        const q = validate(ListQuerySchema, queryObject(query), 'query');
        const base: IncidentQuery = {
          ...(q.status ? { status: q.status } : {}),
          ...(q.since !== undefined ? { since: q.since } : {}),
          ...(q.limit !== undefined ? { limit: q.limit } : {}),
        };
        if (q.grid !== undefined && !canSeeGrid(u, q.grid)) throw new HttpError('HTTP_ERR_FORBIDDEN');
        if (q.grid !== undefined || seesAllGrids(u)) {
          return { body: { incidents: manager.list({ ...base, ...(q.grid !== undefined ? { grid: q.grid } : {}) }) } };
        }
        // A grid worker: one query per grid, merged newest opened first (the manager's order).
        const merged = u.grids.flatMap((grid) => manager.list({ ...base, grid }));
        merged.sort((a, b) => b.openedAt - a.openedAt || (a.id < b.id ? 1 : -1));
        return { body: { incidents: merged.slice(0, q.limit ?? 500) } };
      },
    },
    {
      method: 'GET',
      path: '/api/incidents/:id',
      auth: 'user',
      handle({ user, params }) {
        return { body: { incident: visible(manager, need(user), params.id ?? '') } };
      },
    },
    {
      method: 'POST',
      path: '/api/incidents/:id/:action',
      auth: 'user',
      async handle({ user, params, body }) {
        const u = need(user);
        const action = ActionSchema.safeParse(params.action);
        if (!action.success) throw new HttpError('HTTP_ERR_NOT_FOUND');
        visible(manager, u, params.id ?? '');
        const { note } = validate(ActionBodySchema, await body());
        try {
          return { body: { incident: manager.transition(params.id ?? '', action.data, `user:${u.name}`, note) } };
        } catch (err) {
          if (isIncidentError(err, 'INC_ERR_TRANSITION')) throw new HttpError('HTTP_ERR_CONFLICT', 'that action is not allowed in the incident’s current status');
          if (isIncidentError(err, 'INC_ERR_NOT_FOUND')) throw new HttpError('HTTP_ERR_NOT_FOUND', 'no incident with that id');
          throw err;
        }
      },
    },
  ];
}
