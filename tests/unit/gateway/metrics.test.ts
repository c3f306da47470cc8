import { afterEach, describe, expect, it } from 'vitest';
import type { GatewayHealth } from '../../../gateway/app.js';
import { createMetrics, type Metrics, type MetricsDeps, type MetricsHealth } from '../../../gateway/metrics.js';

// A real gateway.health() must fit what the metrics read (checked by tsc).
const _fits: (h: GatewayHealth) => MetricsHealth = (h) => h;

function fakeHealth(): MetricsHealth {
  return {
    broker: { clients: 7 },
    buses: [
      {
        bus: { id: 'rs485-1', state: 'open' },
        modbus: { rejected: { crc: 3, garbage_bytes: 12 } as unknown as NonNullable<MetricsHealth['buses'][number]['modbus']>['rejected'] },
      },
      { bus: { id: 'rf-1', state: 'reopening' }, rf: { rejectedCandidates: 2, skippedBytes: 40, unknownKeys: 1, decodeErrors: 0 } },
    ],
    sinks: [
      { name: 'embedded', depth: 0, oldestUnsentAgeMs: null, pointsWritten: 100, retries: 0, deadLettered: 0 },
      { name: 'influxdb1', depth: 25, oldestUnsentAgeMs: 1500, pointsWritten: 75, retries: 4, deadLettered: 2 },
      { name: 'blind', depth: null, oldestUnsentAgeMs: null, pointsWritten: 0, retries: 0, deadLettered: 0 },
    ],
    store: { droppedTelemetry: 5 },
    pipeline: { accepted: { 'smoke/smoke-json': 10, 'electrical/elec-ers1': 4 }, rejected: { ING_ERR_INVALID_READING: 2 }, droppedOverLimit: 3 },
    rules: { evaluations: 321 },
    uplink: { connected: true, outboxDepth: 6 },
  };
}

function deps(over: Partial<MetricsDeps> = {}): MetricsDeps {
  return {
    health: fakeHealth,
    openIncidents: () => [{ severity: 'critical' }, { severity: 'critical' }, { severity: 'minor' }],
    devicesOnline: () => [
      { kind: 'smoke', online: true },
      { kind: 'smoke', online: false },
      { kind: 'smoke', online: true },
      { kind: 'pager', online: false },
    ],
    brokerStats: () => ({ refused: { auth_bad_secret: 9, too_large: 0 } as unknown as ReturnType<NonNullable<MetricsDeps['brokerStats']>>['refused'] }),
    ...over,
  };
}

interface Line {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

function parse(text: string): Line[] {
  const out: Line[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`unparsable line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

/** The value of the one sample with exactly these labels (undefined when absent). */
function value(lines: Line[], name: string, labels: Record<string, string> = {}): number | undefined {
  const hits = lines.filter((l) => l.name === name && Object.keys(l.labels).length === Object.keys(labels).length && Object.entries(labels).every(([k, v]) => l.labels[k] === v));
  expect(hits.length).toBeLessThanOrEqual(1);
  return hits[0]?.value;
}

function typeOf(text: string, name: string): string | undefined {
  return new RegExp(`^# TYPE ${name} (\\w+)$`, 'm').exec(text)?.[1];
}

describe('createMetrics', () => {
  let metrics: Metrics | undefined;
  afterEach(() => {
    metrics?.stop();
    metrics = undefined;
  });

  it('exposes every gateway stat with its labels and value', async () => {
    metrics = createMetrics(deps());
    const text = await metrics.text();
    const l = parse(text);

    expect(value(l, 'gridedge_readings_total', { kind: 'smoke', model: 'smoke-json' })).toBe(10);
    expect(value(l, 'gridedge_readings_total', { kind: 'electrical', model: 'elec-ers1' })).toBe(4);
    expect(value(l, 'gridedge_rejects_total', { source: 'pipeline', reason: 'ING_ERR_INVALID_READING' })).toBe(2);
    expect(value(l, 'gridedge_rejects_total', { source: 'broker', reason: 'auth_bad_secret' })).toBe(9);
    expect(value(l, 'gridedge_rejects_total', { source: 'broker', reason: 'too_large' })).toBe(0);
    expect(value(l, 'gridedge_dropped_telemetry_total', { reason: 'rate_limit' })).toBe(3);
    expect(value(l, 'gridedge_dropped_telemetry_total', { reason: 'outbox_full' })).toBe(5);

    expect(value(l, 'gridedge_outbox_depth', { sink: 'embedded' })).toBe(0);
    expect(value(l, 'gridedge_outbox_depth', { sink: 'influxdb1' })).toBe(25);
    expect(value(l, 'gridedge_outbox_depth', { sink: 'blind' })).toBeUndefined();
    expect(value(l, 'gridedge_outbox_oldest_seconds', { sink: 'embedded' })).toBe(0);
    expect(value(l, 'gridedge_outbox_oldest_seconds', { sink: 'influxdb1' })).toBe(1.5);
    expect(value(l, 'gridedge_outbox_oldest_seconds', { sink: 'blind' })).toBeUndefined();
    expect(value(l, 'gridedge_sink_points_written_total', { sink: 'embedded' })).toBe(100);
    expect(value(l, 'gridedge_sink_points_written_total', { sink: 'influxdb1' })).toBe(75);
    expect(value(l, 'gridedge_sink_retries_total', { sink: 'influxdb1' })).toBe(4);
    expect(value(l, 'gridedge_sink_dead_lettered_total', { sink: 'influxdb1' })).toBe(2);

    expect(value(l, 'gridedge_incidents_open', { severity: 'critical' })).toBe(2);
    expect(value(l, 'gridedge_incidents_open', { severity: 'minor' })).toBe(1);
    expect(value(l, 'gridedge_incidents_open', { severity: 'major' })).toBe(0);
    expect(value(l, 'gridedge_incidents_open', { severity: 'info' })).toBe(0);

    expect(value(l, 'gridedge_devices_online', { kind: 'smoke' })).toBe(2);
    expect(value(l, 'gridedge_devices_online', { kind: 'pager' })).toBe(0);
    expect(value(l, 'gridedge_mqtt_clients')).toBe(7);

    expect(value(l, 'gridedge_serial_errors_total', { bus: 'rs485-1', reason: 'crc' })).toBe(3);
    expect(value(l, 'gridedge_serial_errors_total', { bus: 'rs485-1', reason: 'garbage_bytes' })).toBe(12);
    expect(value(l, 'gridedge_serial_errors_total', { bus: 'rf-1', reason: 'rejected_candidates' })).toBe(2);
    expect(value(l, 'gridedge_serial_errors_total', { bus: 'rf-1', reason: 'skipped_bytes' })).toBe(40);
    expect(value(l, 'gridedge_serial_errors_total', { bus: 'rf-1', reason: 'unknown_keys' })).toBe(1);
    expect(value(l, 'gridedge_serial_errors_total', { bus: 'rf-1', reason: 'decode_errors' })).toBe(0);
    expect(value(l, 'gridedge_serial_bus_up', { bus: 'rs485-1' })).toBe(1);
    expect(value(l, 'gridedge_serial_bus_up', { bus: 'rf-1' })).toBe(0);

    expect(value(l, 'gridedge_uplink_connected')).toBe(1);
    expect(value(l, 'gridedge_uplink_outbox_depth')).toBe(6);
    expect(value(l, 'gridedge_rule_evaluations_total')).toBe(321);

    // Monotonic stats are real counters; current levels are gauges.
    expect(typeOf(text, 'gridedge_readings_total')).toBe('counter');
    expect(typeOf(text, 'gridedge_serial_errors_total')).toBe('counter');
    expect(typeOf(text, 'gridedge_outbox_depth')).toBe('gauge');
    expect(typeOf(text, 'gridedge_alarm_to_uplink_seconds')).toBe('histogram');

    // Default process metrics, event-loop lag included.
    expect(l.some((x) => x.name === 'process_cpu_user_seconds_total')).toBe(true);
    expect(l.some((x) => x.name === 'nodejs_eventloop_lag_seconds')).toBe(true);
    expect(l.some((x) => x.name === 'nodejs_eventloop_lag_p99_seconds')).toBe(true);
    expect(metrics.contentType).toMatch(/^text\/plain/);
  });

  it('reads the stats at each scrape without double-counting', async () => {
    let h = fakeHealth();
    metrics = createMetrics(deps({ health: () => h }));
    const first = parse(await metrics.text());
    const second = parse(await metrics.text());
    for (const name of ['gridedge_readings_total', 'gridedge_rejects_total', 'gridedge_sink_retries_total', 'gridedge_rule_evaluations_total', 'gridedge_serial_errors_total']) {
      expect(second.filter((x) => x.name === name)).toEqual(first.filter((x) => x.name === name));
    }
    expect(value(second, 'gridedge_readings_total', { kind: 'smoke', model: 'smoke-json' })).toBe(10);

    // The stats move on; a sink and the uplink go away.
    h = {
      ...fakeHealth(),
      pipeline: { accepted: { 'smoke/smoke-json': 11 }, rejected: {}, droppedOverLimit: 3 },
      sinks: [],
      uplink: undefined,
    };
    const third = parse(await metrics.text());
    expect(value(third, 'gridedge_readings_total', { kind: 'smoke', model: 'smoke-json' })).toBe(11);
    expect(value(third, 'gridedge_readings_total', { kind: 'electrical', model: 'elec-ers1' })).toBeUndefined();
    expect(third.some((x) => x.name === 'gridedge_outbox_depth')).toBe(false);
    expect(value(third, 'gridedge_uplink_connected')).toBeUndefined();
  });

  it('takes one snapshot of the health per scrape', async () => {
    let calls = 0;
    metrics = createMetrics(
      deps({
        health: () => {
          calls++;
          return fakeHealth();
        },
      }),
    );
    await metrics.text();
    expect(calls).toBe(1);
    await metrics.text();
    expect(calls).toBe(2);
  });

  it('records alarm-to-uplink latency in the histogram', async () => {
    metrics = createMetrics(deps());
    metrics.observeAlarmLatency(3); // 0.003 s
    metrics.observeAlarmLatency(80); // 0.08 s
    metrics.observeAlarmLatency(4000); // 4 s
    metrics.observeAlarmLatency(-1); // ignored
    metrics.observeAlarmLatency(Number.NaN); // ignored
    const l = parse(await metrics.text());
    expect(value(l, 'gridedge_alarm_to_uplink_seconds_count')).toBe(3);
    expect(value(l, 'gridedge_alarm_to_uplink_seconds_sum')).toBeCloseTo(4.083, 6);
    expect(value(l, 'gridedge_alarm_to_uplink_seconds_bucket', { le: '0.005' })).toBe(1);
    expect(value(l, 'gridedge_alarm_to_uplink_seconds_bucket', { le: '0.1' })).toBe(2);
    expect(value(l, 'gridedge_alarm_to_uplink_seconds_bucket', { le: '2.5' })).toBe(2);
    expect(value(l, 'gridedge_alarm_to_uplink_seconds_bucket', { le: '5' })).toBe(3);
    expect(value(l, 'gridedge_alarm_to_uplink_seconds_bucket', { le: '+Inf' })).toBe(3);

    // A second scrape does not count them again.
    expect(value(parse(await metrics.text()), 'gridedge_alarm_to_uplink_seconds_count')).toBe(3);
  });

  it('works without the optional sources and does not share a registry', async () => {
    const a = createMetrics({ health: fakeHealth, openIncidents: () => [] });
    const b = createMetrics({ health: fakeHealth, openIncidents: () => [] });
    try {
      a.observeAlarmLatency(10);
      const la = parse(await a.text());
      const lb = parse(await b.text());
      expect(la.some((x) => x.name === 'gridedge_devices_online')).toBe(false);
      expect(la.some((x) => x.name === 'gridedge_rejects_total' && x.labels.source === 'broker')).toBe(false);
      expect(value(la, 'gridedge_incidents_open', { severity: 'critical' })).toBe(0);
      expect(value(la, 'gridedge_alarm_to_uplink_seconds_count')).toBe(1);
      expect(value(lb, 'gridedge_alarm_to_uplink_seconds_count')).toBe(0);
    } finally {
      a.stop();
      b.stop();
    }
  });

  it('is empty after stop()', async () => {
    const m = createMetrics(deps());
    m.stop();
    m.observeAlarmLatency(5);
    expect(await m.text()).toBe('');
  });
});
