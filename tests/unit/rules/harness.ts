import { MODELS } from '../../../devices/catalogue.js';
import type { DeviceRecord } from '../../../devices/device-record.js';
import type { Reading } from '../../../devices/reading.js';
import type { CompiledRule } from '../../../rules/dsl/compile.js';
import { createRuleEngine, type RuleEngine, type RuleEngineDeps, type RuleLogger, type RuleState } from '../../../rules/engine/engine.js';
import type { RuleSignal } from '../../../rules/signals.js';

/** Test doubles for the rule engine: an in-memory store, a hand-moved clock, a registry. */

export const GRID = '110101013001002';
export const T0 = Date.UTC(2024, 11, 4, 8, 0, 0);

/** The store's getJson/setJson in memory, with a write counter. */
export class MemoryState implements RuleState {
  readonly map = new Map<string, string>();
  writes = 0;
  get(key: string): unknown {
    const v = this.map.get(key);
    return v === undefined ? undefined : (JSON.parse(v) as unknown);
  }
  set(key: string, value: unknown): void {
    this.writes++;
    this.map.set(key, JSON.stringify(value));
  }
  delete(key: string): void {
    this.map.delete(key);
  }
}

export interface LogLine {
  readonly level: string;
  readonly obj: object;
  readonly msg: string | undefined;
}

export function memoryLogger(lines: LogLine[] = []): RuleLogger & { lines: LogLine[] } {
  const at = (level: string) => (obj: object, msg?: string) => void lines.push({ level, obj, msg });
  return { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

export interface DeviceSpec {
  readonly id: string;
  readonly model: string;
  readonly building?: string;
  readonly room?: string;
  readonly grid?: string;
  readonly setpoints?: Record<string, number>;
  readonly drill?: boolean;
  readonly heartbeatMs?: number;
}

export function deviceRecord(spec: DeviceSpec): DeviceRecord {
  return {
    id: spec.id,
    model: spec.model,
    place: { grid: spec.grid ?? GRID, building: spec.building ?? '7', room: spec.room ?? 'B1-3' },
    ...(spec.setpoints ? { setpoints: spec.setpoints } : {}),
    ...(spec.drill !== undefined ? { drill: spec.drill } : {}),
    ...(spec.heartbeatMs !== undefined ? { heartbeatMs: spec.heartbeatMs } : {}),
  };
}

export interface Sample {
  readonly metrics?: Record<string, number>;
  readonly state?: Record<string, boolean>;
  readonly events?: readonly string[];
}

export function readingOf(record: DeviceRecord, at: number, sample: Sample): Reading {
  const model = MODELS.get(record.model);
  if (!model) throw new Error(`unknown model ${record.model}`);
  return {
    deviceId: record.id,
    model: record.model,
    kind: model.kind,
    ts: at,
    receivedAt: at,
    metrics: { ...sample.metrics },
    state: { ...sample.state },
    events: [...(sample.events ?? [])],
    place: record.place,
  };
}

export interface Rig {
  readonly engine: RuleEngine;
  readonly signals: RuleSignal[];
  readonly state: MemoryState;
  readonly devices: Map<string, DeviceRecord>;
  readonly logger: ReturnType<typeof memoryLogger>;
  /** Current clock. */
  now(): number;
  /** Moves the clock (never back) and ticks. */
  tickTo(t: number): void;
  /** A reading at `at` (the clock moves there first; the gateway ticks up to then). */
  send(deviceId: string, at: number, sample: Sample): void;
  /** A new engine over the same state, devices and signal list (a gateway restart). */
  restart(extra?: Partial<RuleEngineDeps>): Rig;
}

export interface RigOptions {
  readonly rules: readonly CompiledRule[];
  readonly devices: readonly DeviceSpec[];
  readonly start?: number;
  readonly state?: MemoryState;
  readonly signals?: RuleSignal[];
  readonly deps?: Partial<RuleEngineDeps>;
  /** Tick every this many ms between steps (default 250, as the gateway would). */
  readonly tickMs?: number;
}

export function heartbeatOf(model: string): number {
  const m = MODELS.get(model);
  if (!m) throw new Error(`unknown model ${model}`);
  return m.heartbeatMs;
}

export function makeRig(options: RigOptions, shared?: { devices: Map<string, DeviceRecord>; seq: { n: number }; clock: { t: number } }): Rig {
  const devices = shared?.devices ?? new Map(options.devices.map((d) => [d.id, deviceRecord(d)]));
  const clock = shared?.clock ?? { t: options.start ?? T0 };
  const seq = shared?.seq ?? { n: 0 };
  const state = options.state ?? new MemoryState();
  const signals = options.signals ?? [];
  const logger = memoryLogger();
  const tickMs = options.tickMs ?? 250;
  const engine = createRuleEngine({
    rules: options.rules,
    clock: () => clock.t,
    logger,
    deviceFor: (id) => devices.get(id),
    modelHeartbeatMs: heartbeatOf,
    state,
    onSignal: (s) => void signals.push(s),
    ...options.deps,
  });
  const tickTo = (t: number) => {
    // Fine ticks over short gaps (like the gateway), one tick over long ones (days of silence).
    if (t - clock.t <= 10 * 60_000) {
      while (clock.t + tickMs < t) {
        clock.t += tickMs;
        engine.tick(clock.t);
      }
    }
    clock.t = Math.max(clock.t, t);
    engine.tick(clock.t);
  };
  const rig: Rig = {
    engine,
    signals,
    state,
    devices,
    logger,
    now: () => clock.t,
    tickTo,
    send(deviceId, at, sample) {
      const record = devices.get(deviceId);
      if (!record) throw new Error(`no device ${deviceId}`);
      tickTo(at);
      engine.onReading({ seq: ++seq.n, reading: readingOf(record, at, sample) });
    },
    restart(extra) {
      return makeRig({ ...options, state, signals, deps: { ...options.deps, ...extra } }, { devices, seq, clock });
    },
  };
  return rig;
}

/** A signal as tests compare it. */
export function brief(s: RuleSignal): { kind: string; rule: string; at: number; key: string } {
  return { kind: s.kind, rule: s.ruleId, at: s.at, key: s.scopeKey };
}
