import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { AuthThrottleStats } from './broker/auth-throttle.js';
import type { BrokerStats } from './broker/index.js';
import type { GatewayHealth } from './app.js';

/**
 * `GET /metrics` (SPEC §8): Prometheus exposition of the stats the gateway already keeps.
 *
 * Every gridedge_* metric except the latency histogram is computed at scrape time by a prom-client
 * `collect()` callback that reads one snapshot of the gateway's stats: no timer, no second copy of
 * a count that could drift, and nothing is double-counted however often we are scraped.
 *
 * Monotonic stats (readings, rejects, retries…) are exposed as real counters (`# TYPE … counter`),
 * so that `rate()` and counter-reset detection work. prom-client counters cannot be set, so their
 * collect() does `reset()` and then `inc(labels, current)`: after each collect the counter holds
 * exactly the source's value. (A Gauge named `_total` would expose the same number but with the
 * wrong type.) A reset of the source (gateway restart) shows up as an ordinary counter reset.
 */

type Health = GatewayHealth;
type BusHealth = Health['buses'][number];

/**
 * The part of GatewayHealth the metrics read: a real `gateway.health()` fits, and tests can give
 * a small object.
 */
export interface MetricsHealth {
  readonly broker: Pick<Health['broker'], 'clients'>;
  readonly buses: readonly {
    readonly bus: Pick<BusHealth['bus'], 'id' | 'state'>;
    readonly modbus?: Pick<NonNullable<BusHealth['modbus']>, 'rejected'>;
    readonly rf?: Pick<NonNullable<BusHealth['rf']>, 'rejectedCandidates' | 'skippedBytes' | 'unknownKeys' | 'decodeErrors'>;
  }[];
  readonly sinks: readonly Pick<Health['sinks'][number], 'name' | 'depth' | 'oldestUnsentAgeMs' | 'pointsWritten' | 'retries' | 'deadLettered'>[];
  readonly store: Pick<Health['store'], 'droppedTelemetry'>;
  readonly pipeline: Pick<Health['pipeline'], 'accepted' | 'rejected' | 'droppedOverLimit'>;
  readonly rules: Pick<Health['rules'], 'evaluations'>;
  readonly uplink: Pick<NonNullable<Health['uplink']>, 'connected' | 'outboxDepth'> | undefined;
  /** Omitted by tests that give a small object: no disk series then. */
  readonly disk?: Pick<Health['disk'], 'state' | 'free' | 'droppedTelemetry'>;
}

export interface MetricsDeps {
  /** `() => gateway.health()`; read once per scrape. */
  health(): MetricsHealth;
  /** Open incidents (`safety.manager.list(...)` filtered to open ones). */
  openIncidents(): readonly { readonly severity: string }[];
  /** Every registered device with its kind and whether it is online; omitted: the gauge is empty. */
  devicesOnline?(): readonly { readonly kind: string; readonly online: boolean }[];
  /** `() => gateway.broker.stats()`; omitted: no broker series in gridedge_rejects_total. */
  brokerStats?(): Pick<BrokerStats, 'refused'> & { readonly authThrottle?: AuthThrottleStats };
}

export interface Metrics {
  /** The Prometheus text exposition (format 0.0.4). */
  text(): Promise<string>;
  /** The Content-Type header for text(). */
  readonly contentType: string;
  /** One alarm's latency from its reading's arrival to the uplink's PUBACK, in ms. */
  observeAlarmLatency(ms: number): void;
  /** Unregisters everything; text() is empty afterwards. */
  stop(): void;
}

/** Alarm to uplink: expected tens of ms, tolerable up to seconds, beyond that the uplink was down. */
export const ALARM_LATENCY_BUCKETS_SECONDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60] as const;

/** Severities that always have a series (0 when none is open), so that alerts see a value. */
const KNOWN_SEVERITIES = ['critical', 'major', 'minor', 'info'] as const;

interface Snapshot {
  readonly health: MetricsHealth;
  readonly incidents: readonly { readonly severity: string }[];
  readonly devices: readonly { readonly kind: string; readonly online: boolean }[];
  readonly refused: Readonly<Record<string, number>>;
  readonly authThrottle: AuthThrottleStats | undefined;
}

type Sample<L extends string> = readonly [labels: Readonly<Record<L, string>>, value: number];

export function createMetrics(deps: MetricsDeps): Metrics {
  const registry = new Registry();
  let stopped = false;

  // One snapshot per scrape, taken lazily by the first collect() that needs it and dropped after
  // the scrape, so every metric of one exposition sees the same stats.
  let current: Snapshot | undefined;
  const snapshot = (): Snapshot => {
    if (!current) {
      const broker = deps.brokerStats?.();
      current = {
        health: deps.health(),
        incidents: deps.openIncidents(),
        devices: deps.devicesOnline?.() ?? [],
        refused: broker?.refused ?? {},
        authThrottle: broker?.authThrottle,
      };
    }
    return current;
  };

  function counter<L extends string>(name: string, help: string, labelNames: readonly L[], read: (s: Snapshot) => Iterable<Sample<L>>): void {
    new Counter<L>({
      name,
      help,
      labelNames,
      registers: [registry],
      collect() {
        this.reset();
        for (const [labels, value] of read(snapshot())) this.inc(labels, finite(value));
      },
    });
  }

  function gauge<L extends string>(name: string, help: string, labelNames: readonly L[], read: (s: Snapshot) => Iterable<Sample<L>>): void {
    new Gauge<L>({
      name,
      help,
      labelNames,
      registers: [registry],
      collect() {
        this.reset();
        let any = false;
        for (const [labels, value] of read(snapshot())) {
          this.set(labels, value);
          any = true;
        }
        // reset() leaves a label-less gauge at 0; with no sample it must be absent instead.
        if (!any && labelNames.length === 0) this.remove({});
      },
    });
  }

  const none = {} as Readonly<Record<never, string>>;

  counter('gridedge_readings_total', 'Readings committed, by device kind and model.', ['kind', 'model'], (s) =>
    Object.entries(s.health.pipeline.accepted).map(([key, n]) => {
      // The pipeline keys them `${kind}/${model}`.
      const slash = key.indexOf('/');
      const labels = slash < 0 ? { kind: key, model: '' } : { kind: key.slice(0, slash), model: key.slice(slash + 1) };
      return [labels, n] as const;
    }),
  );

  counter('gridedge_rejects_total', 'Input refused, by source (pipeline, broker) and reason code.', ['source', 'reason'], (s) => [
    ...Object.entries(s.health.pipeline.rejected).map(([reason, n]) => [{ source: 'pipeline', reason }, n] as const),
    ...Object.entries(s.refused).map(([reason, n]) => [{ source: 'broker', reason }, n] as const),
  ]);

  // Credential brute force (broker/auth-throttle.ts): lockouts of a client address, rate limits of a device id.
  counter('gridedge_auth_lockouts_total', 'Credential brute force: client addresses locked out (ip) and device ids rate-limited (device), since start.', ['scope'], (s) =>
    s.authThrottle ? [[{ scope: 'ip' }, s.authThrottle.lockouts.ip], [{ scope: 'device' }, s.authThrottle.lockouts.device]] : [],
  );
  gauge('gridedge_auth_lockouts_active', 'Client addresses locked out (ip) and device ids rate-limited (device) right now.', ['scope'], (s) =>
    s.authThrottle ? [[{ scope: 'ip' }, s.authThrottle.active.ip], [{ scope: 'device' }, s.authThrottle.active.device]] : [],
  );

  counter('gridedge_dropped_telemetry_total', 'Telemetry dropped: over the per-device rate limit, the outbox over its bound, or the disk full.', ['reason'], (s) => [
    [{ reason: 'rate_limit' }, s.health.pipeline.droppedOverLimit],
    [{ reason: 'outbox_full' }, s.health.store.droppedTelemetry],
    ...(s.health.disk ? [[{ reason: 'disk_full' }, s.health.disk.droppedTelemetry] as const] : []),
  ]);

  // A sink whose source cannot tell its depth (null) gets no outbox series rather than a fake 0.
  gauge('gridedge_outbox_depth', 'Entries not yet delivered, per sink.', ['sink'], (s) =>
    s.health.sinks.flatMap((k) => (k.depth === null ? [] : [[{ sink: k.name }, k.depth] as const])),
  );
  gauge('gridedge_outbox_oldest_seconds', 'Age of the oldest undelivered entry, per sink (0 when none).', ['sink'], (s) =>
    s.health.sinks.flatMap((k) => (k.depth === null ? [] : [[{ sink: k.name }, (k.oldestUnsentAgeMs ?? 0) / 1000] as const])),
  );
  counter('gridedge_sink_points_written_total', 'Points the sink server accepted.', ['sink'], (s) => s.health.sinks.map((k) => [{ sink: k.name }, k.pointsWritten] as const));
  counter('gridedge_sink_retries_total', 'Sink writes repeated after a failure.', ['sink'], (s) => s.health.sinks.map((k) => [{ sink: k.name }, k.retries] as const));
  counter('gridedge_sink_dead_lettered_total', 'Readings the sink dead-lettered.', ['sink'], (s) => s.health.sinks.map((k) => [{ sink: k.name }, k.deadLettered] as const));

  gauge('gridedge_incidents_open', 'Open incidents, by severity.', ['severity'], (s) => {
    const by = new Map<string, number>(KNOWN_SEVERITIES.map((v) => [v, 0]));
    for (const i of s.incidents) by.set(i.severity, (by.get(i.severity) ?? 0) + 1);
    return [...by].map(([severity, n]) => [{ severity }, n] as const);
  });

  gauge('gridedge_devices_online', 'Registered devices online, by kind (kinds with none online show 0).', ['kind'], (s) => {
    const by = new Map<string, number>();
    for (const d of s.devices) by.set(d.kind, (by.get(d.kind) ?? 0) + (d.online ? 1 : 0));
    return [...by].map(([kind, n]) => [{ kind }, n] as const);
  });

  gauge('gridedge_mqtt_clients', 'Connected, authenticated MQTT clients (devices and operators).', [], (s) => [[none, s.health.broker.clients]]);

  counter('gridedge_serial_errors_total', 'Serial input rejected, by bus and reason (Modbus reject counts; RF bridge rejected candidates, skipped bytes, unknown keys, decode errors).', ['bus', 'reason'], (s) =>
    s.health.buses.flatMap(({ bus, modbus, rf }) => [
      ...(modbus ? Object.entries(modbus.rejected).map(([reason, n]) => [{ bus: bus.id, reason }, n] as const) : []),
      ...(rf
        ? ([
            [{ bus: bus.id, reason: 'rejected_candidates' }, rf.rejectedCandidates],
            [{ bus: bus.id, reason: 'skipped_bytes' }, rf.skippedBytes],
            [{ bus: bus.id, reason: 'unknown_keys' }, rf.unknownKeys],
            [{ bus: bus.id, reason: 'decode_errors' }, rf.decodeErrors],
          ] as const)
        : []),
    ]),
  );
  gauge('gridedge_serial_bus_up', '1 when the serial bus is open.', ['bus'], (s) => s.health.buses.map(({ bus }) => [{ bus: bus.id }, bus.state === 'open' ? 1 : 0] as const));

  // No uplink configured: no series (absent, not "disconnected").
  gauge('gridedge_uplink_connected', '1 when the city uplink is connected.', [], (s) => (s.health.uplink ? [[none, s.health.uplink.connected ? 1 : 0]] : []));
  gauge('gridedge_uplink_outbox_depth', 'Incident changes not yet PUBACKed by the city uplink.', [], (s) => (s.health.uplink ? [[none, s.health.uplink.outboxDepth]] : []));
  gauge('gridedge_disk_full', '1 while the data directory is in disk-full mode (plain telemetry dropped, alarms stored).', [], (s) => (s.health.disk ? [[none, s.health.disk.state === 'full' ? 1 : 0]] : []));
  gauge('gridedge_disk_free_bytes', 'Free space on the data directory, at the last check.', [], (s) => (s.health.disk ? [[none, s.health.disk.free]] : []));
  counter('gridedge_rule_evaluations_total', 'Rule evaluations (one rule against one reading, or one timer).', [], (s) => [[none, s.health.rules.evaluations]]);

  const alarmLatency = new Histogram({
    name: 'gridedge_alarm_to_uplink_seconds',
    help: 'From an alarm reading arriving to its incident being PUBACKed by the city uplink.',
    buckets: [...ALARM_LATENCY_BUCKETS_SECONDS],
    registers: [registry],
  });

  // process_*, nodejs_* including nodejs_eventloop_lag_* (prom-client 15 measures the lag with
  // perf_hooks.monitorEventLoopDelay and a setImmediate at collect time, plus a gc
  // PerformanceObserver: no setInterval, nothing that keeps the process alive).
  collectDefaultMetrics({ register: registry });

  return {
    contentType: registry.contentType,
    async text() {
      if (stopped) return '';
      current = undefined;
      try {
        return await registry.metrics();
      } finally {
        current = undefined;
      }
    },
    observeAlarmLatency(ms) {
      if (stopped || !Number.isFinite(ms) || ms < 0) return;
      alarmLatency.observe(ms / 1000);
    },
    stop() {
      stopped = true;
      registry.clear();
    },
  };
}

/** A counter refuses NaN and negatives; a broken stat must not make the whole scrape fail. */
function finite(n: number): number {
  return Number.isFinite(n) && n > 0 ? n : 0;
}
