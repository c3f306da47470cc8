import type { Logger } from 'pino';
import { createInfluxDb1Sink } from '../ingest/sinks/influxdb1.js';
import { createInfluxDb2Sink } from '../ingest/sinks/influxdb2.js';
import { createSinkRunner, type SinkHealth, type SinkRunner, type SinkRunnerOptions } from '../ingest/sinks/runner.js';
import type { Sink } from '../ingest/sinks/sink.js';
import { incidentToLine } from '../ingest/sinks/line-protocol.js';
import type { Store } from '../ingest/store/index.js';
import type { Incident, IncidentOutbox } from '../rules/incidents/index.js';
import type { SinkConfig } from './config/schema.js';

/** Store consumers of sinks are named `sink:<type>:<where>`, so that reordering the config keeps each cursor. */
const CONSUMER_PREFIX = 'sink:';

export interface SinkSet {
  start(): void;
  stop(): Promise<void>;
  /** New readings were committed. */
  notify(): void;
  /**
   * Also deliver incident changes (SPEC §5: measurement `incident`), each sink by its own cursor
   * on the incident store's change log (`outboxFor(name)` of one of {@link incidentConsumers}).
   * Call before start().
   */
  attachIncidents(outboxFor: (consumer: string) => IncidentOutbox): void;
  health(): SinkHealth[];
}

/** The consumers of the incident change log these sink configs need (rules/incidents/store.ts). */
export function incidentConsumers(configs: readonly SinkConfig[]): string[] {
  return configs.flatMap((cfg) => (cfg.type === 'embedded' ? [] : [consumerName(cfg)]));
}

/** One incident change as a line: the incident at that version, timed by its change. */
function incidentLine(payload: string): { line: string; deviceId: string | undefined } {
  const inc = JSON.parse(payload) as Incident;
  return {
    line: incidentToLine({ id: inc.id, type: inc.type, severity: inc.severity, status: inc.status, grid: inc.grid, deviceIds: inc.deviceIds, level: inc.level, at: inc.updatedAt }),
    deviceId: inc.deviceIds[0],
  };
}

function consumerName(cfg: Exclude<SinkConfig, { type: 'embedded' }>): string {
  return cfg.type === 'influxdb1'
    ? `${CONSUMER_PREFIX}influxdb1:${cfg.url}/${cfg.database}`
    : `${CONSUMER_PREFIX}influxdb2:${cfg.url}/${cfg.org}/${cfg.bucket}`;
}

function createSink(cfg: Exclude<SinkConfig, { type: 'embedded' }>, name: string, logger: Logger): Sink {
  if (cfg.type === 'influxdb1') {
    return createInfluxDb1Sink({
      name,
      url: cfg.url,
      database: cfg.database,
      createDatabase: cfg.createDatabase,
      logger,
      ...(cfg.retentionPolicy !== undefined ? { retentionPolicy: cfg.retentionPolicy } : {}),
      ...(cfg.username !== undefined ? { username: cfg.username } : {}),
      ...(cfg.password !== undefined ? { password: cfg.password } : {}),
    });
  }
  return createInfluxDb2Sink({ name, url: cfg.url, org: cfg.org, bucket: cfg.bucket, token: cfg.token });
}

/**
 * The configured time-series sinks, each delivering the store's readings by its own durable
 * cursor (DESIGN.md). `embedded` needs no runner: the store's readings table is that sink. A sink
 * removed from the config has its consumer removed, so it no longer holds the outbox.
 */
export function createSinkSet(configs: readonly SinkConfig[], store: Store, logger: Logger, clock: () => number = Date.now): SinkSet {
  const entries: { runner: SinkRunner; sink: Sink; name: string; cfg: Exclude<SinkConfig, { type: 'embedded' }>; log: Logger }[] = [];
  const incidentRunners: SinkRunner[] = [];
  const deadLetter: SinkRunnerOptions['onDeadLetter'] = (d) =>
    store.deadLetter({ source: `sink:${d.sink}`, ...(d.deviceId !== undefined ? { deviceId: d.deviceId } : {}), reason: d.code, detail: d.message, payload: Buffer.from(d.line) });
  const wanted = new Set<string>();
  for (const cfg of configs) {
    if (cfg.type === 'embedded') continue;
    const name = consumerName(cfg);
    wanted.add(name);
    store.registerConsumer(name);
    const log = logger.child({ sink: name.slice(CONSUMER_PREFIX.length) });
    const sink = createSink(cfg, name.slice(CONSUMER_PREFIX.length), log);
    const runner = createSinkRunner({
      sink,
      logger: log,
      batchSize: cfg.batchSize,
      flushIntervalMs: cfg.flushInterval,
      source: {
        read: (limit, after) => store.readAfter(name, limit, after),
        ack: (seq) => store.ack(name, seq),
        depth: () => store.depth(name),
        oldestUnsentAgeMs: () => store.oldestUnsentAge(name) ?? 0,
      },
      onDeadLetter: deadLetter,
    });
    entries.push({ runner, sink, name, cfg, log });
  }
  for (const c of store.listConsumers()) {
    if (c.name.startsWith(CONSUMER_PREFIX) && !wanted.has(c.name)) {
      store.removeConsumer(c.name);
      logger.warn({ consumer: c.name }, 'sink no longer configured: its outbox cursor is removed');
    }
  }
  const runners = (): SinkRunner[] => [...entries.map((e) => e.runner), ...incidentRunners];
  return {
    start: () => runners().forEach((r) => r.start()),
    async stop() {
      await Promise.all(runners().map((r) => r.stop()));
      await Promise.all(entries.map((e) => e.sink.close()));
    },
    notify: () => entries.forEach((e) => e.runner.notify()),
    attachIncidents(outboxFor) {
      for (const e of entries) {
        const outbox = outboxFor(e.name);
        const sink = e.sink;
        // The same client; its own name in health and metrics, closed with the readings' runner.
        const incidentSink: Sink = { name: `${sink.name}:incidents`, write: (lines) => sink.write(lines), close: () => Promise.resolve() };
        const runner = createSinkRunner({
          sink: incidentSink,
          logger: e.log,
          batchSize: e.cfg.batchSize,
          flushIntervalMs: e.cfg.flushInterval,
          source: {
            read: (limit, after) => outbox.readAfter(after ?? outbox.cursor(), limit).map((row) => ({ seq: row.seq, ...incidentLine(row.payload) })),
            ack: (seq) => outbox.ack(seq),
            depth: () => outbox.stats().depth,
            oldestUnsentAgeMs: () => {
              const oldest = outbox.stats().oldestCreatedAt;
              return oldest === undefined ? 0 : Math.max(0, clock() - oldest);
            },
          },
          onDeadLetter: deadLetter,
        });
        outbox.subscribe(() => runner.notify());
        incidentRunners.push(runner);
      }
    },
    health: () => runners().map((r) => r.health()),
  };
}
