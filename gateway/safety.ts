import type { Logger } from 'pino';
import { MODELS } from '../devices/catalogue.js';
import { localTopics } from '../devices/topics.js';
import type { Store, StoredReading } from '../ingest/store/index.js';
import { loadRules } from '../rules/dsl/index.js';
import { createRuleEngine, type RuleEngine } from '../rules/engine/index.js';
import {
  createIncidentManager,
  openIncidentStore,
  redactorFor,
  type Incident,
  type IncidentChange,
  type IncidentManager,
  type IncidentStore,
} from '../rules/incidents/index.js';
import type { DeviceBroker } from './broker/index.js';
import type { GatewayConfig } from './config/schema.js';
import { createDownlink, type Downlink } from './downlink.js';
import type { DeviceRegistry } from './registry/registry.js';
import { incidentConsumers } from './sinks.js';
import { createCommandHandler, createUplink, type Uplink } from './uplink/index.js';

/** The rule engine's store consumer: its cursor is what the engine has durably evaluated. */
export const RULES_CONSUMER = 'rules';
const TICK_MS = 250;
const REPLAY_BATCH = 1000;

export interface SafetyDeps {
  readonly config: GatewayConfig;
  readonly registry: DeviceRegistry;
  readonly store: Store;
  readonly broker: DeviceBroker;
  readonly logger: Logger;
  /** Wall-clock ms: what readings and incidents are stamped with. */
  readonly clock: () => number;
  /**
   * The wall-clock steps seen so far, summed (gateway/wall-clock.ts). Escalation, `for` timers
   * and offline detection measure real elapsed time with it (docs/SPEC-NOTES.md "Clock
   * steps"); without it (a test's fake clock) every change of `clock` is elapsed time.
   */
  readonly clockSteps?: () => number;
  /** Told of every incident change after it is persisted (the HTTP stream, metrics). */
  readonly onIncidentChange?: (incident: Incident, change: IncidentChange) => void;
  /** A critical incident's first version reached the city's broker, this long after its reading arrived. */
  readonly onAlarmDelivered?: (latencyMs: number) => void;
}

export interface Safety {
  start(): Promise<void>;
  stop(): Promise<void>;
  readonly manager: IncidentManager;
  readonly engine: RuleEngine;
  readonly downlink: Downlink;
  /** The incident store: its change log also feeds the time-series sinks (gateway/sinks.ts). */
  readonly incidents: IncidentStore;
  health(): { rules: ReturnType<RuleEngine['stats']>; uplink: ReturnType<Uplink['health']> | undefined };
}

/**
 * Rules, incidents and the uplink (SPEC §6, §7), fed by committed readings only. The engine reads
 * the store through its own cursor: at start it replays what was committed but not yet evaluated
 * before a crash, so a reading that was PUBACKed always gets its rules run, exactly once in
 * effect (the engine skips seqs it has already seen, the manager folds repeats).
 */
export async function createSafety(deps: SafetyDeps): Promise<Safety> {
  const { config, registry, store, broker, clock } = deps;
  const logger = deps.logger.child({ module: 'safety' });
  const { rules } = await loadRules(config.rules, config.gateway.dataDir);

  const downlink = createDownlink({ registry, broker });
  // The change log is read by the uplink and by each time-series sink (SPEC §5: measurement `incident`).
  const consumers = [...(config.uplink !== undefined ? ['uplink'] : []), ...incidentConsumers(config.sinks)];
  const incidents: IncidentStore = openIncidentStore({ dataDir: config.gateway.dataDir, logger, consumers });
  const residents = registry.list().flatMap((d) => (d.resident ? [d.resident.name, d.resident.phone] : []));
  const manager = createIncidentManager({
    gatewayId: config.gateway.id,
    store: incidents,
    clock: deps.clockSteps ? { now: clock, steps: deps.clockSteps } : { now: clock },
    logger,
    escalation: config.escalation,
    redact: redactorFor(residents),
    onChange: (incident, change) => {
      uplink?.notify();
      broker.publishLocal(localTopics.incident(incident.id), JSON.stringify(incident)).catch((err: unknown) => logger.warn({ err }, 'local incident republish failed'));
      if (change.action === 'acknowledged') ackDevices(incident, change);
      try {
        deps.onIncidentChange?.(incident, change);
      } catch (err) {
        logger.error({ err, incident: incident.id }, 'incident listener failed');
      }
    },
  });

  /** SPEC §3.3: a human acknowledged: tell the MQTT devices that raised it (a pager shows it to the resident). */
  function ackDevices(incident: Incident, change: IncidentChange): void {
    for (const id of incident.deviceIds) {
      if (MODELS.get(registry.get(id)?.model ?? '')?.transport !== 'mqtt') continue;
      downlink
        .send(id, { cmd: 'ack', incident: incident.id, text: change.note ?? '' })
        .catch((err: unknown) => logger.warn({ err, deviceId: id }, 'downlink ack failed'));
    }
  }

  const engine = createRuleEngine({
    rules,
    clock,
    ...(deps.clockSteps ? { clockSteps: deps.clockSteps } : {}),
    logger: logger.child({ module: 'rules' }),
    deviceFor: (id) => registry.get(id),
    modelHeartbeatMs: (model) => MODELS.get(model)?.heartbeatMs ?? 3_600_000,
    state: { get: (k) => store.getJson(k), set: (k, v) => store.setJson(k, v), delete: (k) => void store.deleteJson(k) },
    transaction: (fn) => store.transaction(fn),
    onSignal: (signal) => void manager.onSignal(signal),
  });

  function evaluate(stored: StoredReading): void {
    engine.onReading(stored);
    const { reading } = stored;
    // SPEC §7: the resident pressed cancel: their open SOS of the last 2 minutes is cancelled.
    if (reading.kind === 'pager' && reading.events.includes('cancel')) manager.cancelFromDevice(reading.deviceId, reading.receivedAt);
  }

  const uplink: Uplink | undefined = config.uplink
    ? createUplink({
        ...config.uplink,
        gatewayId: config.gateway.id,
        outbox: incidents.outbox,
        onCommand: createCommandHandler(manager, config.gateway.id),
        onDelivered: (row, at) => {
          if (row.version !== 1 || deps.onAlarmDelivered === undefined) return;
          const opened = JSON.parse(row.payload) as Pick<Incident, 'severity' | 'openedAt'>;
          // openedAt is the triggering reading's receivedAt: reading in → incident acknowledged upstream.
          if (opened.severity === 'critical') deps.onAlarmDelivered(at - opened.openedAt);
        },
        logger: logger.child({ module: 'uplink' }),
      })
    : undefined;

  let timer: NodeJS.Timeout | undefined;
  let unsubscribe: (() => void) | undefined;

  return {
    manager,
    engine,
    downlink,
    incidents,
    async start() {
      store.registerConsumer(RULES_CONSUMER, { from: 'start' });
      manager.start();
      engine.restore(store.loadDeviceStates());
      // Replay what a crash left committed but unevaluated, then follow new commits.
      let after = store.listConsumers().find((c) => c.name === RULES_CONSUMER)?.cursor ?? 0;
      for (let batch = store.readAfter(RULES_CONSUMER, REPLAY_BATCH, after); batch.length > 0; batch = store.readAfter(RULES_CONSUMER, REPLAY_BATCH, after)) {
        batch.forEach(evaluate);
        after = (batch[batch.length - 1] as StoredReading).seq;
      }
      engine.flush();
      if (engine.persistedSeq() > 0) store.ack(RULES_CONSUMER, Math.min(engine.persistedSeq(), after));
      unsubscribe = store.onCommit((batch) => batch.forEach(evaluate), 'rules');
      let acked = after;
      // Each step in its own bulkhead: a store that is busy or full for a moment must neither
      // crash the gateway from a timer nor keep an escalation from firing.
      const step = (name: string, fn: () => void) => {
        try {
          fn();
        } catch (err) {
          logger.error({ err, step: name }, 'safety tick step failed; retried on the next tick');
        }
      };
      timer = setInterval(() => {
        const now = clock();
        step('rules', () => engine.tick(now));
        step('escalation', () => void manager.tick(now));
        step('cursor', () => {
          const done = Math.min(engine.persistedSeq(), store.stats().lastSeq);
          if (done > acked) {
            store.ack(RULES_CONSUMER, done);
            acked = done;
          }
        });
      }, TICK_MS);
      uplink?.start();
      await Promise.resolve();
    },
    async stop() {
      if (timer) clearInterval(timer);
      unsubscribe?.();
      engine.flush();
      await uplink?.stop();
      manager.stop();
      incidents.close();
    },
    health: () => ({ rules: engine.stats(), uplink: uplink?.health() }),
  };
}
