import { z } from 'zod';
import { BatteryPctSchema, DeviceTimeSchema, SignalDbmSchema } from '../mqtt-common.js';

/**
 * SPEC §3.3 `smoke-json`: the detector's native JSON on `dev/{id}/up`. Optional flags that are
 * missing mean false. Unknown keys are tolerated and dropped (see mqtt-common.ts).
 */
export const SmokeJsonPayloadSchema = z.object({
  ts: DeviceTimeSchema.optional(),
  /** The device's message counter: checked, not carried into the reading. */
  seq: z.number().int().nonnegative().optional(),
  smoke: z.boolean(),
  battery: BatteryPctSchema,
  rssi: SignalDbmSchema.optional(),
  tamper: z.boolean().optional(),
  fault: z.boolean().optional(),
  silenced: z.boolean().optional(),
  test: z.boolean().optional(),
});
export type SmokeJsonPayload = z.infer<typeof SmokeJsonPayloadSchema>;
