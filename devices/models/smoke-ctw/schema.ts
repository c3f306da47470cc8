import { z } from 'zod';
import { BatteryPctSchema, DeviceTimeSchema, SignalDbmSchema } from '../mqtt-common.js';

/**
 * SPEC §3.3 `smoke-ctw`: an NB-IoT detector's report as the China Telecom (CTWing) platform style
 * forwards it. The platform wraps `serviceData` in an envelope with keys of its own (deviceId,
 * productId, messageType, IMEI…): tolerated and dropped (see mqtt-common.ts).
 *
 * `Alarm_Status` is any finite number here: which numbers are codes is the codec's table, so an
 * unknown one is DEV_ERR_UNKNOWN_CODE rather than a schema error.
 */
export const SmokeCtwPayloadSchema = z.object({
  timestamp: DeviceTimeSchema,
  payload: z.object({
    serviceData: z.object({
      Alarm_Status: z.number(),
      Battery_Level: BatteryPctSchema,
      RSRP: SignalDbmSchema.optional(),
    }),
  }),
});
export type SmokeCtwPayload = z.infer<typeof SmokeCtwPayloadSchema>;
