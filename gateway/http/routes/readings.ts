import { z } from 'zod';
import { HttpError } from '../errors.js';
import { queryObject, timeParam, validate, type Route } from '../router.js';
import { visibleDevice, type DeviceApiDeps } from './devices.js';

const ReadingsQuerySchema = z
  .strictObject({
    device: z.string().min(1).max(64),
    from: timeParam().optional(),
    to: timeParam().optional(),
    limit: z.coerce.number().int().min(1).max(10_000).optional(),
  })
  .refine((q) => q.from === undefined || q.to === undefined || q.from <= q.to, { message: 'from must not be after to', path: ['from'] });

/** `GET /api/readings?device=&from=&to=` (SPEC §8): oldest first, the device's grid must be the user's. */
export function readingRoutes(deps: Pick<DeviceApiDeps, 'registry' | 'store'>): Route[] {
  return [
    {
      method: 'GET',
      path: '/api/readings',
      auth: 'user',
      handle({ user, query }) {
        if (!user) throw new HttpError('HTTP_ERR_UNAUTHORIZED');
        const q = validate(ReadingsQuerySchema, queryObject(query), 'query');
        const device = visibleDevice(deps.registry, user, q.device);
        const readings = deps.store.queryReadings({
          deviceId: device.id,
          ...(q.from !== undefined ? { from: q.from } : {}),
          ...(q.to !== undefined ? { to: q.to } : {}),
          ...(q.limit !== undefined ? { limit: q.limit } : {}),
        });
        return { body: { device: device.id, readings: readings.map((r) => r.reading) } };
      },
    },
  ];
}
