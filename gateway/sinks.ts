import type { Logger } from 'pino';
import { createInfluxDb1Sink } from '../ingest/sinks/influxdb1.js';
import { createInfluxDb2Sink } from '../ingest/sinks/influxdb2.js';
import { createSinkRunner, type SinkHealth, type SinkRunner } from '../ingest/sinks/runner.js';
import type { Sink } from '../ingest/sinks/sink.js';
import type { Store } from '../ingest/store/index.js';
import type { SinkConfig } from './config/schema.js';

/** Store consumers of sinks are named `sink:<type>:<where>`, so that reordering the config keeps each cursor. */
const CONSUMER_PREFIX = 'sink:';

export interface SinkSet {
  start(): void;
  stop(): Promise<void>;
  /** New readings were committed. */
  notify(): void;
  health(): SinkHealth[];
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
export function createSinkSet(configs: readonly SinkConfig[], store: Store, logger: Logger): SinkSet {
  const entries: { runner: SinkRunner; sink: Sink }[] = [];
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
        read: (limit) => store.readAfter(name, limit),
        ack: (seq) => store.ack(name, seq),
        depth: () => store.depth(name),
        oldestUnsentAgeMs: () => store.oldestUnsentAge(name) ?? 0,
      },
      onDeadLetter: (d) =>
        store.deadLetter({ source: `sink:${d.sink}`, deviceId: d.reading.deviceId, reason: d.code, detail: d.message, payload: Buffer.from(d.line) }),
    });
    entries.push({ runner, sink });
  }
  for (const c of store.listConsumers()) {
    if (c.name.startsWith(CONSUMER_PREFIX) && !wanted.has(c.name)) {
      store.removeConsumer(c.name);
      logger.warn({ consumer: c.name }, 'sink no longer configured: its outbox cursor is removed');
    }
  }
  return {
    start: () => entries.forEach((e) => e.runner.start()),
    async stop() {
      await Promise.all(entries.map((e) => e.runner.stop()));
      await Promise.all(entries.map((e) => e.sink.close()));
    },
    notify: () => entries.forEach((e) => e.runner.notify()),
    health: () => entries.map((e) => e.runner.health()),
  };
}
