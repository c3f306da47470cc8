import type { Logger } from 'pino';
import { getModel } from '../devices/catalogue.js';
import type { DeviceRecord } from '../devices/device-record.js';
import type { ReadingDraft } from '../devices/reading.js';
import type { Pipeline } from '../ingest/pipeline/index.js';
import type { SerialBusConfig } from './config/schema.js';
import type { DeviceRegistry } from './registry/registry.js';
import { createSerialBus, openSerialPort, systemSerialClock, type OpenPort, type SerialBus, type SerialClock } from './serial/bus.js';
import { createModbusMaster, type ModbusMaster } from './serial/modbus-master.js';
import { createRfReader, type RfReader } from './serial/rf-reader.js';

export interface SerialBusesHealth {
  readonly bus: ReturnType<SerialBus['health']>;
  readonly modbus?: ReturnType<ModbusMaster['stats']>;
  readonly rf?: ReturnType<RfReader['stats']>;
}

export interface SerialBuses {
  start(): Promise<void>;
  stop(): Promise<void>;
  health(): SerialBusesHealth[];
  /** The registry changed: each Modbus master polls the meters now registered on its bus. */
  refresh(): void;
  /** RF ids heard on any bus that nobody registered (for enrolment). */
  unregistered(): { bus: string; id: string; firstSeen: number; lastSeen: number; presses: number; lastKey: number }[];
}

export interface SerialBusesDeps {
  readonly buses: readonly SerialBusConfig[];
  readonly registry: DeviceRegistry;
  readonly pipeline: Pipeline;
  readonly logger: Logger;
  readonly clock?: SerialClock;
  /** Tests and the demo may give another port (an in-process transport). */
  readonly openPort?: OpenPort;
}

/** Every configured serial bus with its protocol: a Modbus RTU master or an RF-bridge reader (SPEC §4). */
export function createSerialBuses(deps: SerialBusesDeps): SerialBuses {
  const { registry, pipeline, logger } = deps;
  const clock = deps.clock ?? systemSerialClock;
  const onReading = (draft: ReadingDraft, device: DeviceRecord) => pipeline.acceptDraft(draft, device);
  const items = deps.buses.map((cfg) => {
    const log = logger.child({ bus: cfg.id });
    const bus = createSerialBus({
      id: cfg.id,
      path: cfg.path,
      baudRate: cfg.baudRate,
      dataBits: cfg.dataBits,
      parity: cfg.parity,
      stopBits: cfg.stopBits,
      logger: log,
      clock,
      openPort: deps.openPort ?? openSerialPort,
    });
    const devices = registry.list().filter((d) => d.bus === cfg.id);
    if (cfg.protocol === 'modbus-rtu') {
      const master = createModbusMaster({
        bus,
        devices,
        modelFor: (d) => {
          const m = getModel(d.model);
          return m?.transport === 'modbus-rtu' ? m : undefined;
        },
        previousState: (id) => pipeline.previousState(id),
        pollIntervalMs: cfg.pollInterval,
        timeoutMs: cfg.timeout,
        retries: cfg.retries,
        gapMs: cfg.gap,
        clock,
        logger: log,
        onReading,
        // Timeouts are a dead meter, not bad input: counted, not dead-lettered.
        onReject: (reason, detail, device) =>
          pipeline.reject('serial', `MODBUS_${reason.toUpperCase()}`, detail, { deviceId: device.id, deadLetter: reason !== 'timeout' }),
      });
      return { bus, master, reader: undefined };
    }
    const model = getModel('pager-rf');
    if (model?.transport !== 'rf-bridge') throw new Error('the catalogue has no pager-rf model');
    const reader = createRfReader({
      bus,
      resolve: (rf) => registry.byRf(cfg.id, rf),
      devices: () => registry.list().filter((d) => d.bus === cfg.id && d.model === model.id),
      model,
      previousState: (id) => pipeline.previousState(id),
      clock,
      logger: log,
      onReading,
      onReject: (reason, detail, device) => pipeline.reject('serial', `RF_${reason.toUpperCase()}`, detail, { deviceId: device.id }),
    });
    return { bus, master: undefined, reader };
  });

  return {
    async start() {
      for (const i of items) {
        i.master?.start();
        i.reader?.start();
      }
      await Promise.all(items.map((i) => i.bus.start()));
    },
    async stop() {
      for (const i of items) {
        i.reader?.stop();
        await i.master?.stop();
      }
      await Promise.all(items.map((i) => i.bus.stop()));
    },
    refresh() {
      for (const i of items) i.master?.setDevices(registry.list().filter((d) => d.bus === i.bus.id));
    },
    health: () =>
      items.map((i) => ({
        bus: i.bus.health(),
        ...(i.master ? { modbus: i.master.stats() } : {}),
        ...(i.reader ? { rf: i.reader.stats() } : {}),
      })),
    unregistered: () => items.flatMap((i) => (i.reader ? i.reader.unregistered().map((u) => ({ bus: i.bus.id, ...u })) : [])),
  };
}
