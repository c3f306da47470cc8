import { mkdirSync } from 'node:fs';
import type { Logger } from 'pino';
import { MODELS } from '../devices/catalogue.js';
import { localTopics } from '../devices/topics.js';
import { createPipeline, type Pipeline } from '../ingest/pipeline/index.js';
import { openStore, type Store } from '../ingest/store/index.js';
import { createDeviceBroker, type DeviceBroker } from './broker/index.js';
import { createDiskGuard, type DiskGuard, type DiskHealth } from './disk-guard.js';
import type { GatewayConfig } from './config/schema.js';
import { createLiveRegistry, watchRegistry, type RegistryWatch } from './registry/live.js';
import type { DeviceRegistry, RegistryLoad } from './registry/registry.js';
import { createSerialBuses, type SerialBuses } from './serial-buses.js';
import type { OpenPort } from './serial/bus.js';
import { storePath } from './data-files.js';
import { createHttpServer, type HttpServer } from './http/server.js';
import { createMetrics, type Metrics } from './metrics.js';
import { createSafety, type Safety } from './safety.js';
import { createSinkSet, type SinkSet } from './sinks.js';
import { createWallClock } from './wall-clock.js';

export interface GatewayDeps {
  readonly config: GatewayConfig;
  readonly registry: DeviceRegistry;
  /** The registry file and how to load it: re-read when it changes (SPEC §11). */
  readonly registrySource?: { readonly file: string; load(): Promise<RegistryLoad> };
  readonly logger: Logger;
  readonly clock?: () => number;
  /** Serial transport; the demo gives an in-process one when socat is missing. */
  readonly openPort?: OpenPort;
}

export interface Gateway {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Available after start(). */
  readonly store: Store;
  readonly broker: DeviceBroker;
  readonly pipeline: Pipeline;
  /** Rules, incidents and the uplink. */
  readonly safety: Safety;
  /** The HTTP API's bound port (SPEC §8), after start(). */
  httpPort(): number;
  health(): GatewayHealth;
}

export interface GatewayHealth {
  readonly ok: boolean;
  readonly broker: { clients: number; ports: { tcp: number; tls?: number } };
  readonly buses: ReturnType<SerialBuses['health']>;
  readonly sinks: ReturnType<SinkSet['health']>;
  readonly store: ReturnType<Store['stats']>;
  readonly pipeline: ReturnType<Pipeline['stats']>;
  readonly rules: ReturnType<Safety['health']>['rules'];
  readonly uplink: ReturnType<Safety['health']>['uplink'];
  /** The data directory's disk (SPEC-NOTES "Disk full"): `full` makes `ok` false. */
  readonly disk: DiskHealth & { readonly droppedTelemetry: number };
}

const RETENTION_EVERY_MS = 10 * 60_000;

/**
 * The composition root (DESIGN.md, STYLE.md): it owns the sockets, ports, timers and files, and
 * wires the libraries. Construction only stores dependencies; start() opens everything in the
 * order a reading flows backwards (store first, device listeners last), stop() undoes it.
 */
export function createGateway(deps: GatewayDeps): Gateway {
  const { config, logger } = deps;
  const registry = createLiveRegistry(deps.registry);
  // The real clock is watched for NTP steps (docs/SPEC-NOTES.md "Clock steps"); a test's clock is taken as it is.
  const wall = deps.clock ? undefined : createWallClock({ onStep: (stepMs, at) => logger.warn({ stepMs, at }, 'the wall clock stepped') });
  const clock = deps.clock ?? (wall ? wall.now : Date.now);
  let parts: Started | undefined;

  function need() {
    if (!parts) throw new Error('the gateway is not started');
    return parts;
  }

  return {
    async start() {
      mkdirSync(config.gateway.dataDir, { recursive: true });
      // The HTTP server needs the incident manager, and the manager (and the broker) tell the
      // server's stream of every change: the one late-bound reference in the wiring.
      const live: { http?: HttpServer; metrics?: Metrics } = {};
      // Disk full: the guard releases its reserve inside the failing commit and makes the store
      // refuse plain telemetry, so alarms keep being stored (SPEC-NOTES "Disk full").
      const disk = createDiskGuard({
        dir: config.gateway.dataDir,
        reserveBytes: config.store.reserveBytes,
        onChange: (full) => store.refuseTelemetry(full),
        logger: logger.child({ module: 'disk' }),
        clock,
      });
      const store = openStore({
        path: storePath(config.gateway.dataDir),
        clock,
        logger: logger.child({ module: 'store' }),
        outboxMaxBytes: config.outbox.maxBytes,
        onFull: () => disk.reportFull(),
      });
      disk.start();
      const pipeline = createPipeline({ store, modelFor: (id) => MODELS.get(id), logger: logger.child({ module: 'pipeline' }), clock });
      const sinks = createSinkSet(config.sinks, store, logger.child({ module: 'sinks' }), clock);
      const brokerLog = logger; // the broker names its own module in its log lines
      const broker = createDeviceBroker({
        listen: config.mqtt.listen,
        tls: config.mqtt.tls,
        maxPayloadBytes: config.mqtt.maxPayloadBytes,
        rateLimit: config.mqtt.rateLimit,
        operators: config.mqtt.operators,
        devices: registry,
        isMqttModel: (id) => MODELS.get(id)?.transport === 'mqtt',
        onDeviceMessage: (msg) => pipeline.acceptMqtt(msg),
        onPresence: (deviceId, online, at, reason) => {
          brokerLog.info({ deviceId, online, at, reason }, online ? 'device online' : 'device offline');
          live.http?.broadcast({ type: 'device', data: { deviceId, online, at, reason } });
        },
        logger: brokerLog,
        clock,
      });
      const buses = createSerialBuses({
        buses: config.serial,
        registry,
        pipeline,
        logger, // each bus, master and reader names its own module
        ...(deps.openPort ? { openPort: deps.openPort } : {}),
      });
      // Fan-out listens to commits only: nothing downstream sees a reading a crash could lose.
      const unsubscribe = store.onCommit((batch) => {
        sinks.notify();
        if (!broker.hasLocalReaders()) return;
        for (const { reading } of batch) {
          broker.publishLocal(localTopics.reading(reading.kind, reading.deviceId), JSON.stringify(reading)).catch((err: unknown) => {
            brokerLog.warn({ err }, 'local republish failed');
          });
        }
      }, 'gateway');

      const safety = await createSafety({
        config,
        registry,
        store,
        broker,
        logger,
        clock,
        ...(wall ? { clockSteps: wall.steps } : {}),
        onIncidentChange: (incident) => live.http?.broadcast({ type: 'incident', data: incident }),
        onAlarmDelivered: (ms) => live.metrics?.observeAlarmLatency(ms),
      });
      const metrics = createMetrics({
        health: () => healthOf(need()),
        openIncidents: () => safety.manager.list({ status: ['open', 'acknowledged', 'dispatched'] }),
        brokerStats: () => broker.stats(),
        devicesOnline: () => devicesOnline(registry, store, clock()),
      });
      const http = createHttpServer({
        host: config.http.host,
        port: config.http.port,
        users: config.users,
        site: { gatewayId: config.gateway.id, street: config.site.street, communities: config.site.communities, grids: config.site.grids },
        ...(config.http.metricsTokenHash !== undefined ? { metricsTokenHash: config.http.metricsTokenHash } : {}),
        manager: safety.manager,
        registry,
        store,
        downlink: safety.downlink,
        health: () => healthOf(need()),
        unregistered: () => buses.unregistered(),
        metrics: () => metrics.text(),
        logger: logger.child({ module: 'http' }),
        clock,
      });
      live.http = http;
      live.metrics = metrics;

      const retention = config.sinks.find((s) => s.type === 'embedded')?.retention;
      const timers: NodeJS.Timeout[] = [];
      if (retention !== undefined) {
        const prune = () =>
          store.pruneExpired({ retentionMs: retention }).catch((err: unknown) => logger.warn({ err }, 'retention pruning failed'));
        timers.push(setInterval(() => void prune(), RETENTION_EVERY_MS).unref());
      }
      const watch = deps.registrySource
        ? watchRegistry({ file: deps.registrySource.file, load: () => deps.registrySource?.load() ?? Promise.reject(new Error('no registry source')), live: registry, logger: logger.child({ module: 'registry' }) })
        : undefined;
      await watch?.check();
      registry.onChange(() => buses.refresh());
      parts = { store, disk, pipeline, broker, buses, sinks, safety, http, metrics, watch, timers, unsubscribe };
      sinks.attachIncidents((consumer) => safety.incidents.outboxFor(consumer));
      sinks.start();
      // Rules first: they replay what a crash left unevaluated before any new reading arrives.
      await safety.start();
      await buses.start();
      await broker.start();
      await http.start();
      logger.info({ gateway: config.gateway.id, devices: registry.size, ports: broker.ports(), http: http.port(), buses: config.serial.length }, 'gateway started');
    },

    async stop() {
      if (!parts) return;
      const p = parts;
      parts = undefined;
      p.timers.forEach((t) => clearInterval(t));
      p.disk.stop();
      p.watch?.stop();
      await p.http.stop();
      await p.broker.stop();
      await p.buses.stop();
      p.store.flush();
      // Sinks first: their incident runners read the incident store that safety closes.
      await p.sinks.stop();
      await p.safety.stop();
      p.unsubscribe();
      await p.store.close();
      p.metrics.stop();
      logger.info({ gateway: config.gateway.id }, 'gateway stopped');
    },

    get store() {
      return need().store;
    },
    get broker() {
      return need().broker;
    },
    get pipeline() {
      return need().pipeline;
    },
    get safety() {
      return need().safety;
    },
    httpPort: () => need().http.port(),

    health: () => healthOf(need()),
  };
}

/** What health is read from. */
interface Parts {
  store: Store;
  disk: DiskGuard;
  pipeline: Pipeline;
  broker: DeviceBroker;
  buses: SerialBuses;
  sinks: SinkSet;
  safety: Safety;
}

/** Everything start() opened, which stop() closes. */
interface Started extends Parts {
  http: HttpServer;
  metrics: Metrics;
  watch: RegistryWatch | undefined;
  timers: NodeJS.Timeout[];
  unsubscribe: () => void;
}

/** `/healthz` (SPEC §8): broker, buses, sinks, outbox depth, uplink. */
function healthOf(p: Parts): GatewayHealth {
  const sinks = p.sinks.health();
  const buses = p.buses.health();
  const safety = p.safety.health();
  const store = p.store.stats();
  const disk = { ...p.disk.health(), droppedTelemetry: store.refusedTelemetry };
  return {
    ok: sinks.every((s) => s.ok) && buses.every((b) => b.bus.state === 'open') && (safety.uplink?.connected ?? true) && disk.state === 'ok',
    broker: { clients: p.broker.clients(), ports: p.broker.ports() },
    buses,
    sinks,
    store,
    pipeline: p.pipeline.stats(),
    ...safety,
    disk,
  };
}

/** Online: heard within twice the device's heartbeat (its own, or its model's). */
function devicesOnline(registry: DeviceRegistry, store: Store, now: number): { kind: string; online: boolean }[] {
  return registry.list().flatMap((d) => {
    const model = MODELS.get(d.model);
    if (!model) return [];
    const lastSeen = store.getDeviceState(d.id)?.lastSeen;
    return [{ kind: model.kind, online: lastSeen !== undefined && now - lastSeen <= 2 * (d.heartbeatMs ?? model.heartbeatMs) }];
  });
}
