import { z } from 'zod';
import { PlaceSchema } from './place.js';

/** A resident's personal data: shown only to users whose grids include the device, never logged (SPEC §8). */
export const ResidentSchema = z.object({
  name: z.string().min(1).max(64),
  phone: z.string().min(1).max(32),
});
export type Resident = z.infer<typeof ResidentSchema>;

/**
 * One registered device, as the registry holds it after validation (SPEC §11). Which of the
 * optional fields are required depends on the model's transport; the registry checks that.
 */
export const DeviceRecordSchema = z.object({
  id: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$/, { message: 'device id: 1–64 of A–Z a–z 0–9 _ . : - (no / + #)' }),
  model: z.string().min(1),
  place: PlaceSchema,
  /** `scrypt$…` hash of the MQTT secret; never the plain secret. */
  secretHash: z.string().startsWith('scrypt$').optional(),
  /** Serial bus id (config `serial[].id`). */
  bus: z.string().min(1).optional(),
  /** Modbus slave address. */
  address: z.number().int().min(1).max(247).optional(),
  /** EV1527 20-bit id, 5 upper-case hex digits. */
  rf: z.string().regex(/^[0-9A-F]{5}$/).optional(),
  /** Overrides the model's heartbeat for offline detection. */
  heartbeatMs: z.number().int().positive().optional(),
  resident: ResidentSchema.optional(),
  /** Per-device rule set-points, e.g. `{ residual_ma: 100 }` (SPEC §6). */
  setpoints: z.record(z.string(), z.number()).optional(),
  /** A device in drill mode records events but raises nothing (SPEC §6). */
  drill: z.boolean().optional(),
});
export type DeviceRecord = z.infer<typeof DeviceRecordSchema>;
