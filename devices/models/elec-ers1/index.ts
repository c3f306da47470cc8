/**
 * `elec-ers1`: electrical fire monitoring sensor on RS-485, Modbus RTU (SPEC §2, §4.2). The whole
 * model is its register map; framing, decoding and events are the shared Modbus meter code.
 */
import { defineModbusMeter } from '../../modbus/meter-model.js';
import type { ModbusModel } from '../../model.js';
import { ERS1_REGISTER_MAP } from './register-map.js';

export { ERS1_NO_PROBE, ERS1_REGISTERS, ERS1_REGISTER_MAP } from './register-map.js';

export const model: ModbusModel = defineModbusMeter({
  id: 'elec-ers1',
  description: 'ERS-1 electrical fire monitoring sensor (leakage, line temperature, arc), Modbus RTU over RS-485',
  // SPEC §4.1: the default poll interval. The master reports silence as comm_fault, so the
  // heartbeat is only what `silentFor: 2x` measures against.
  heartbeatMs: 1000,
  map: ERS1_REGISTER_MAP,
});
