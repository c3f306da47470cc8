import { z } from 'zod';
import { MODELS } from '../../../devices/catalogue.js';
import type { DeviceRecord } from '../../../devices/device-record.js';
import type { Reading } from '../../../devices/reading.js';
import type { Store } from '../../../ingest/store/index.js';
import { DownlinkError, type Downlink } from '../../downlink.js';
import type { DeviceRegistry } from '../../registry/registry.js';
import { canSeeGrid, canSeeResident, seesAllGrids, type HttpUser } from '../auth.js';
import { HttpError } from '../errors.js';
import { validate, type Route } from '../router.js';

export interface DeviceApiDeps {
  readonly registry: Pick<DeviceRegistry, 'get' | 'list'>;
  readonly store: Pick<Store, 'queryReadings' | 'getDeviceState'>;
  readonly downlink: Pick<Downlink, 'send'>;
  readonly unregistered: () => unknown[];
  readonly clock: () => number;
}

const FALLBACK_HEARTBEAT_MS = 3_600_000;

const CommandBodySchema = z.strictObject({});

export interface DeviceView {
  id: string;
  model: string;
  place: DeviceRecord['place'];
  drill: boolean;
  lastSeen: number | null;
  /** SPEC §8: heard from within twice its heartbeat. */
  online: boolean;
  battery: { pct: number | null; low: boolean | null };
  lastReading?: Reading | null;
  resident?: { name: string; phone: string };
}

export function heartbeatOf(device: Pick<DeviceRecord, 'model' | 'heartbeatMs'>): number {
  return device.heartbeatMs ?? MODELS.get(device.model)?.heartbeatMs ?? FALLBACK_HEARTBEAT_MS;
}

function need(user: HttpUser | undefined): HttpUser {
  if (!user) throw new HttpError('HTTP_ERR_UNAUTHORIZED');
  return user;
}

/** The device if it exists and the user may see its grid: 404 / 403 (with no data) otherwise. */
export function visibleDevice(registry: DeviceApiDeps['registry'], user: HttpUser, id: string): DeviceRecord {
  const device = registry.get(id);
  if (!device) throw new HttpError('HTTP_ERR_NOT_FOUND', 'no registered device with that id');
  if (!canSeeGrid(user, device.place.grid)) throw new HttpError('HTTP_ERR_FORBIDDEN');
  return device;
}

/** SPEC §8 devices, and the two downlink commands. */
export function deviceRoutes(deps: DeviceApiDeps): Route[] {
  const { registry, store, downlink, clock } = deps;

  function view(device: DeviceRecord, user: HttpUser, withLastReading: boolean): DeviceView {
    const state = store.getDeviceState(device.id);
    const lastSeen = state?.lastSeen ?? null;
    const v: DeviceView = {
      id: device.id,
      model: device.model,
      // Only the place fields: never the secret hash, bus wiring or set-points.
      place: { grid: device.place.grid, building: device.place.building, room: device.place.room, ...(device.place.address !== undefined ? { address: device.place.address } : {}) },
      drill: device.drill ?? false,
      lastSeen,
      online: lastSeen !== null && clock() - lastSeen <= 2 * heartbeatOf(device),
      battery: { pct: state?.metrics.battery_pct ?? null, low: state?.state.battery_low ?? null },
    };
    if (withLastReading) v.lastReading = store.queryReadings({ deviceId: device.id, order: 'desc', limit: 1 })[0]?.reading ?? null;
    if (device.resident && canSeeResident(user, device.place.grid)) v.resident = { name: device.resident.name, phone: device.resident.phone };
    return v;
  }

  const command = (cmd: 'mute' | 'self_test'): Route => ({
    method: 'POST',
    path: `/api/devices/:id/${cmd}`,
    auth: 'user',
    async handle({ user, params, body }) {
      const device = visibleDevice(registry, need(user), params.id ?? '');
      // No options yet: a body, if any, is an empty JSON object (so that garbage is a 400, not ignored).
      validate(CommandBodySchema, await body());
      try {
        await downlink.send(device.id, { cmd });
      } catch (err) {
        if (err instanceof DownlinkError && err.code === 'DL_ERR_NOT_MQTT') throw new HttpError('HTTP_ERR_CONFLICT', 'the device is not reached over MQTT; commands go only to MQTT devices');
        if (err instanceof DownlinkError) throw new HttpError('HTTP_ERR_NOT_FOUND', 'no registered device with that id');
        throw err;
      }
      return { status: 202, body: { sent: { device: device.id, cmd } } };
    },
  });

  return [
    {
      method: 'GET',
      path: '/api/devices',
      auth: 'user',
      handle({ user }) {
        const u = need(user);
        return { body: { devices: registry.list().filter((d) => canSeeGrid(u, d.place.grid)).map((d) => view(d, u, false)) } };
      },
    },
    {
      // Before /api/devices/:id. RF ids heard on a bus but not registered have no grid: only
      // users who see every grid get them.
      method: 'GET',
      path: '/api/devices/unregistered',
      auth: 'user',
      handle({ user }) {
        if (!seesAllGrids(need(user))) throw new HttpError('HTTP_ERR_FORBIDDEN');
        return { body: { unregistered: deps.unregistered() } };
      },
    },
    {
      method: 'GET',
      path: '/api/devices/:id',
      auth: 'user',
      handle({ user, params }) {
        const u = need(user);
        return { body: { device: view(visibleDevice(registry, u, params.id ?? ''), u, true) } };
      },
    },
    command('mute'),
    command('self_test'),
  ];
}
