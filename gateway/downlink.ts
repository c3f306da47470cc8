import { MODELS } from '../devices/catalogue.js';
import type { DownlinkCommand } from '../devices/model.js';
import type { DeviceBroker } from './broker/index.js';
import type { DeviceRegistry } from './registry/registry.js';

export const DOWNLINK_ERRORS = {
  DL_ERR_UNKNOWN_DEVICE: 'no registered device with this id',
  DL_ERR_NOT_MQTT: 'the device is not reached over MQTT; commands go only to MQTT devices',
} as const;
export type DownlinkErrorCode = keyof typeof DOWNLINK_ERRORS;

export class DownlinkError extends Error {
  override readonly name = 'DownlinkError';
  constructor(
    readonly code: DownlinkErrorCode,
    readonly deviceId: string,
  ) {
    super(`${DOWNLINK_ERRORS[code]}: ${deviceId}`);
  }
}

export interface Downlink {
  /**
   * Sends a command on `dev/{id}/down` (SPEC §3.3) in the device's own wire format, QoS 1. Resolves
   * once the broker has routed it (a device that is offline gets it if its session persists).
   */
  send(deviceId: string, cmd: DownlinkCommand): Promise<void>;
}

/** The one place that turns a command into a model's payload: the acknowledgement to pagers, mute and self_test from the API. */
export function createDownlink(deps: { registry: Pick<DeviceRegistry, 'get'>; broker: Pick<DeviceBroker, 'publishDown'> }): Downlink {
  return {
    async send(deviceId, cmd) {
      const device = deps.registry.get(deviceId);
      if (!device) throw new DownlinkError('DL_ERR_UNKNOWN_DEVICE', deviceId);
      const model = MODELS.get(device.model);
      if (model?.transport !== 'mqtt') throw new DownlinkError('DL_ERR_NOT_MQTT', deviceId);
      await deps.broker.publishDown(deviceId, model.encodeCommand(cmd));
    },
  };
}
