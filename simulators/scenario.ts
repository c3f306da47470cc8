import { readFile } from 'node:fs/promises';
import { isNode, LineCounter, parseDocument } from 'yaml';
import { MAX_YAML_DEPTH, yamlTooDeepAt } from '../devices/yaml-depth.js';
import { z } from 'zod';
import { getModel } from '../devices/catalogue.js';
import type { EncodeSample } from '../devices/model.js';
import { systemClock, type Qos, type SimClock } from './mqtt-device.js';
import type { SiteIndex } from './site.js';

/*
 * Scenario files: timed steps played against simulated devices (YAML, validated once, every error
 * naming the file, the line and the field path).
 *
 *   name: 冰箱插座短路
 *   loop: false                 # true: start again after `period` (default: the last step's `at`)
 *   steps:
 *     - { at: 0s,  meter: { bus: rs485-1, address: 1 }, sample: { metrics: { t1_c: 26.5 } } }
 *     - { at: 30s, meter: { bus: rs485-1, address: 1 }, sample: { state: { short_circuit: true } } }
 *     - { at: 50s, device: SMK-0701-B13, send: { events: [fire_alarm] } }
 *     - { at: 75s, rf: { bus: rf-1, id: 5A3C1, key: sos } }
 *
 * `at` is the time from the start of the run (of the cycle, when looping). Steps run in time
 * order, steps with the same `at` in file order. An MQTT step's `send` is an EncodeSample (ts,
 * metrics, state, events, service) for that device's model, sent with `qos` (default 1); the
 * device keeps the flags it reported before (mqtt-device.ts), so a step names only what changes.
 * A meter step changes the registers its sample names; the others keep what the previous step
 * for that meter set (a meter reports everything in every poll). An rf step presses a key, by
 * name (sos, service_call, family_call, cancel, test, battery_low) or code (0–15).
 */

// ---- durations ----------------------------------------------------------------------------

const UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 } as const;
const WHOLE = /^(?:\d+(?:\.\d+)?(?:ms|s|m|h))+$/;
const PART = /(\d+(?:\.\d+)?)(ms|s|m|h)/g;
export const DURATION_HINT = 'a duration is a number and a unit: 500ms, 20s, 2m, 1h';

/** `20s`, `1m30s`, `500ms` → ms; undefined when it is not one (the same grammar as gridedge.yaml). */
export function parseScenarioDuration(text: string): number | undefined {
  const s = text.trim();
  if (!WHOLE.test(s)) return undefined;
  let ms = 0;
  for (const m of s.matchAll(PART)) ms += Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS];
  return Number.isSafeInteger(ms) ? ms : undefined;
}

const DurationSchema = z.union([z.string(), z.number()], { error: DURATION_HINT }).transform((v, ctx) => {
  // A bare 0 is unambiguous; any other bare number could be ms or s.
  if (v === 0) return 0;
  const ms = typeof v === 'string' ? parseScenarioDuration(v) : undefined;
  if (ms === undefined) {
    ctx.addIssue({ code: 'custom', message: typeof v === 'number' ? `${DURATION_HINT} (a bare number has no unit)` : `"${v}" is not a duration: ${DURATION_HINT}` });
    return z.NEVER;
  }
  return ms;
});

// ---- schema -------------------------------------------------------------------------------

const RF_KEY_NAMES: readonly string[] = getModel('pager-rf')?.produces.events ?? ['sos', 'service_call', 'family_call', 'cancel', 'test', 'battery_low'];

const MetricsSchema = z.record(z.string(), z.number().finite());
const StateSchema = z.record(z.string(), z.boolean());

const SendSchema = z.strictObject({
  ts: z.number().int().nonnegative().optional(),
  metrics: MetricsSchema.optional(),
  state: StateSchema.optional(),
  events: z.array(z.string().min(1)).optional(),
  service: z.string().optional(),
});

const MeterSampleSchema = z.strictObject({ metrics: MetricsSchema.optional(), state: StateSchema.optional() });

const RfIdSchema = z.union([z.string(), z.number()]).transform((v, ctx) => {
  // YAML reads 12345 as a number; 5 decimal digits are still 5 hex digits. 0A3C1 must be quoted.
  const text = typeof v === 'number' ? String(v) : v;
  if (!/^[0-9A-Fa-f]{5}$/.test(text)) {
    ctx.addIssue({ code: 'custom', message: `an rf id is 5 hex digits, e.g. 5A3C1${typeof v === 'number' ? ' (quote ids that start with 0: "0A3C1")' : ''}` });
    return z.NEVER;
  }
  return text.toUpperCase();
});

const RfKeySchema = z.union([z.enum(RF_KEY_NAMES as [string, ...string[]]), z.number().int().min(0).max(15)], {
  error: `key is one of ${RF_KEY_NAMES.join(', ')} or a key code 0–15`,
});

const RawStepSchema = z.strictObject({
  at: DurationSchema,
  note: z.string().optional(),
  device: z.string().min(1).optional(),
  send: SendSchema.optional(),
  qos: z.union([z.literal(0), z.literal(1)], { error: 'qos is 0 or 1' }).optional(),
  meter: z.strictObject({ bus: z.string().min(1), address: z.number().int().min(1).max(247) }).optional(),
  sample: MeterSampleSchema.optional(),
  rf: z.strictObject({ bus: z.string().min(1), id: RfIdSchema, key: RfKeySchema }).optional(),
});

const TARGETS = ['device', 'meter', 'rf'] as const;
/** What each kind of step may carry besides at/note. */
const ALLOWED: Readonly<Record<(typeof TARGETS)[number], readonly string[]>> = {
  device: ['send', 'qos'],
  meter: ['sample'],
  rf: [],
};
const REQUIRED: Readonly<Record<(typeof TARGETS)[number], string | undefined>> = { device: 'send', meter: 'sample', rf: undefined };

const StepSchema = RawStepSchema.superRefine((step, ctx) => {
  const targets = TARGETS.filter((t) => step[t] !== undefined);
  if (targets.length !== 1) {
    ctx.addIssue({
      code: 'custom',
      path: targets.length > 1 ? [targets[1] as string] : [],
      message: targets.length === 0 ? 'a step needs one of device, meter or rf' : `a step has one of device, meter or rf, not ${targets.join(' and ')}`,
    });
    return;
  }
  const target = targets[0] as (typeof TARGETS)[number];
  for (const field of ['send', 'qos', 'sample'] as const) {
    if (step[field] !== undefined && !ALLOWED[target].includes(field)) ctx.addIssue({ code: 'custom', path: [field], message: `a ${target} step has no ${field}` });
  }
  const required = REQUIRED[target];
  if (required !== undefined && step[required as keyof typeof step] === undefined) {
    ctx.addIssue({ code: 'custom', path: [required], message: `required for a ${target} step` });
  }
});

export interface MeterTarget {
  readonly bus: string;
  readonly address: number;
}
export interface RfTarget {
  readonly bus: string;
  /** 5 upper-case hex digits. */
  readonly id: string;
}

interface StepBase {
  /** ms from the start of the cycle. */
  readonly at: number;
  /** Position in the file's `steps`, for messages. */
  readonly index: number;
  readonly note?: string;
}
export type ScenarioStep =
  | (StepBase & { readonly kind: 'mqtt'; readonly device: string; readonly send: EncodeSample; readonly qos: Qos })
  | (StepBase & { readonly kind: 'meter'; readonly meter: MeterTarget; readonly sample: EncodeSample })
  | (StepBase & { readonly kind: 'rf'; readonly rf: RfTarget; readonly key: number; readonly keyName?: string });

export interface Scenario {
  readonly name?: string;
  readonly description?: string;
  readonly loop: boolean;
  /** Cycle length when looping. */
  readonly period: number;
  /** In play order: by `at`, then file order. */
  readonly steps: readonly ScenarioStep[];
}

function keyCode(key: string | number): { key: number; keyName?: string } {
  if (typeof key === 'number') return { key };
  const code = getModel('pager-rf');
  const value = code?.transport === 'rf-bridge' ? code.keyFor({ events: [key] }) : Number.NaN;
  return { key: value, keyName: key };
}

export const ScenarioSchema = z
  .strictObject({
    name: z.string().optional(),
    description: z.string().optional(),
    loop: z.boolean().default(false),
    period: DurationSchema.optional(),
    steps: z.array(StepSchema).min(1, { message: 'a scenario needs at least one step' }),
  })
  .superRefine((s, ctx) => {
    const last = Math.max(...s.steps.map((st) => st.at));
    if (s.period !== undefined && s.period < last) ctx.addIssue({ code: 'custom', path: ['period'], message: `period must be at least the last step's at (${last} ms)` });
    if (s.loop && (s.period ?? last) <= 0) ctx.addIssue({ code: 'custom', path: ['period'], message: 'a looping scenario needs a period longer than 0 (or steps after 0s)' });
  })
  .transform((s): Scenario => {
    const steps = s.steps.map((st, index): ScenarioStep => {
      const base = { at: st.at, index, ...(st.note === undefined ? {} : { note: st.note }) };
      if (st.device !== undefined) return { ...base, kind: 'mqtt', device: st.device, send: st.send ?? {}, qos: st.qos ?? 1 };
      if (st.meter !== undefined) return { ...base, kind: 'meter', meter: st.meter, sample: st.sample ?? {} };
      const rf = st.rf as { bus: string; id: string; key: string | number };
      return { ...base, kind: 'rf', rf: { bus: rf.bus, id: rf.id }, ...keyCode(rf.key) };
    });
    // Stable: same `at` keeps file order.
    steps.sort((a, b) => a.at - b.at || a.index - b.index);
    const last = steps[steps.length - 1]?.at ?? 0;
    return {
      ...(s.name === undefined ? {} : { name: s.name }),
      ...(s.description === undefined ? {} : { description: s.description }),
      loop: s.loop,
      period: s.period ?? last,
      steps,
    };
  });

// ---- errors -------------------------------------------------------------------------------

export interface ScenarioIssue {
  readonly file: string;
  readonly line?: number;
  /** `steps[3].rf.key` */
  readonly path: string;
  readonly message: string;
}

/** `scenario.yaml:14: steps[3].rf.key: …` */
export function formatScenarioIssue(issue: ScenarioIssue): string {
  const where = issue.line === undefined ? issue.file : `${issue.file}:${issue.line}`;
  return issue.path === '' ? `${where}: ${issue.message}` : `${where}: ${issue.path}: ${issue.message}`;
}

export class ScenarioError extends Error {
  override readonly name = 'ScenarioError';
  readonly code = 'SIM_ERR_SCENARIO';
  constructor(readonly issues: readonly ScenarioIssue[]) {
    super(issues.map(formatScenarioIssue).join('\n'));
  }
}

export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else out += out === '' ? String(p) : `.${String(p)}`;
  }
  return out;
}

// ---- parsing ------------------------------------------------------------------------------

/** Parses and validates scenario YAML; throws a ScenarioError listing every problem. */
export function parseScenario(text: string, file = 'scenario.yaml'): Scenario {
  const lineCounter = new LineCounter();
  const deepAt = yamlTooDeepAt(text);
  if (deepAt !== undefined) throw new ScenarioError([{ file, path: '', message: `not valid YAML: nested deeper than ${MAX_YAML_DEPTH} levels`, line: deepAt }]);
  const doc = parseDocument(text, { lineCounter, prettyErrors: true });
  if (doc.errors.length > 0) {
    throw new ScenarioError(
      doc.errors.map((e) => ({ file, path: '', message: `not valid YAML: ${e.message.split('\n')[0] ?? e.message}`, ...(e.linePos ? { line: e.linePos[0].line } : {}) })),
    );
  }
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    // Aliases expanding past maxAliasCount (a "billion laughs" file): the yaml library throws.
    throw new ScenarioError([{ file, path: '', message: `not valid YAML: ${(err as Error).message}` }]);
  }
  const parsed = ScenarioSchema.safeParse(value, { reportInput: true });
  if (parsed.success) return parsed.data;

  const lineOf = (path: readonly PropertyKey[]): number | undefined => {
    // The deepest node of the path that exists in the document.
    for (let n = path.length; n >= 0; n--) {
      const node: unknown = n === 0 ? doc.contents : doc.getIn(path.slice(0, n), true);
      if (isNode(node) && node.range) return lineCounter.linePos(node.range[0]).line;
    }
    return undefined;
  };
  const issues: ScenarioIssue[] = [];
  for (const issue of parsed.error.issues) {
    const paths = issue.code === 'unrecognized_keys' ? issue.keys.map((k) => [...issue.path, k]) : [issue.path];
    for (const path of paths) {
      const message =
        issue.code === 'unrecognized_keys'
          ? 'unknown field'
          : issue.code === 'invalid_type' && issue.input === undefined
            ? 'required'
            : issue.message;
      const line = lineOf(path);
      issues.push({ file, path: formatPath(path), message, ...(line === undefined ? {} : { line }) });
    }
  }
  throw new ScenarioError(issues);
}

export async function loadScenario(path: string, shownAs: string = path): Promise<Scenario> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ScenarioError([{ file: shownAs, path: '', message: code === 'ENOENT' ? 'no such file' : `cannot read: ${code ?? String(err)}` }]);
  }
  return parseScenario(text, shownAs);
}

/** Every MQTT device a scenario sends from, in first-use order. */
export function scenarioDeviceIds(scenario: Scenario): string[] {
  return [...new Set(scenario.steps.flatMap((s) => (s.kind === 'mqtt' ? [s.device] : [])))];
}

/**
 * Checks a scenario against a site: MQTT steps name registered MQTT devices and only what their
 * model can report; meter steps name a registered meter. RF presses are not checked: an
 * unregistered pager is a thing to simulate too (SPEC §4.3, enrolment).
 */
export function checkScenario(scenario: Scenario, site: SiteIndex, file = 'scenario.yaml'): ScenarioIssue[] {
  const issues: ScenarioIssue[] = [];
  const at = (step: ScenarioStep, path: string, message: string) => issues.push({ file, path: `steps[${step.index}]${path}`, message });
  for (const step of scenario.steps) {
    if (step.kind === 'mqtt') {
      const device = site.get(step.device);
      const model = device ? getModel(device.model) : undefined;
      if (!device) at(step, '.device', `no device ${step.device} in the site`);
      else if (model?.transport !== 'mqtt') at(step, '.device', `${step.device} is a ${device.model} device, not an MQTT one`);
      else checkSample(step.send, model.produces, (path, message) => at(step, `.send${path}`, `${message} (${model.id})`));
    } else if (step.kind === 'meter') {
      const device = site.meter(step.meter.bus, step.meter.address);
      const model = device ? getModel(device.model) : undefined;
      if (!device) at(step, '.meter', `no meter at address ${step.meter.address} on bus ${step.meter.bus} in the site`);
      else if (model?.transport !== 'modbus-rtu') at(step, '.meter', `${device.id} is a ${device.model} device, not a Modbus meter`);
      else checkSample(step.sample, model.produces, (path, message) => at(step, `.sample${path}`, `${message} (${model.id})`));
    }
  }
  return issues;
}

function checkSample(sample: EncodeSample, produces: { metrics: readonly string[]; states: readonly string[]; events: readonly string[] }, report: (path: string, message: string) => void): void {
  for (const m of Object.keys(sample.metrics ?? {})) if (!produces.metrics.includes(m)) report(`.metrics.${m}`, 'not a metric this model reports');
  for (const s of Object.keys(sample.state ?? {})) if (!produces.states.includes(s)) report(`.state.${s}`, 'not a state flag this model reports');
  (sample.events ?? []).forEach((e, i) => {
    if (!produces.events.includes(e)) report(`.events[${i}]`, `${e} is not an event this model sends`);
  });
}

// ---- running ------------------------------------------------------------------------------

/** How a scenario reaches serial devices; the serial simulators (modbus-slave, rf-emitter) implement it. */
export interface SerialDriver {
  /** What the meter at `target` answers to its next polls. */
  setMeterSample(target: MeterTarget, sample: EncodeSample): void | Promise<void>;
  /** One press (the emitter repeats the word as a real pager does). */
  pressRf(target: RfTarget, key: number): void | Promise<void>;
}

export interface ScenarioSender {
  send(sample: EncodeSample, options: { qos: Qos }): Promise<void>;
}

export interface StepResult {
  readonly step: ScenarioStep;
  readonly cycle: number;
  /** ms from the start of the run. */
  readonly scheduledAt: number;
  readonly startedAt: number;
  readonly settledAt: number;
  readonly error?: string;
}

export interface ScenarioRunOptions {
  /** The started MQTT simulator of a device id. */
  readonly mqtt: (deviceId: string) => ScenarioSender | undefined;
  readonly serial?: SerialDriver;
  readonly clock?: SimClock;
  readonly signal?: AbortSignal;
  /** When looping: stop after this many cycles (default: until aborted). */
  readonly cycles?: number;
  /** Called once a step has settled (sent and acknowledged, or failed). */
  readonly onStep?: (result: StepResult) => void;
}

export interface ScenarioReport {
  readonly executed: number;
  readonly failed: readonly StepResult[];
  readonly cycles: number;
  readonly aborted: boolean;
  /** Worst start delay behind schedule, ms. */
  readonly maxLateMs: number;
}

/**
 * Plays a scenario. Each step starts at its time whether or not the previous one has been
 * acknowledged yet (so a slow PUBACK does not shift the timeline the gateway is measured
 * against); per device, mqtt.js keeps publish order. A failing step is reported and the run goes on.
 */
export async function runScenario(scenario: Scenario, options: ScenarioRunOptions): Promise<ScenarioReport> {
  const clock = options.clock ?? systemClock;
  const { signal } = options;
  const missing: ScenarioIssue[] = [];
  for (const step of scenario.steps) {
    if (step.kind === 'mqtt' && !options.mqtt(step.device)) missing.push({ file: scenario.name ?? 'scenario', path: `steps[${step.index}].device`, message: `no simulator for ${step.device}` });
    if (step.kind !== 'mqtt' && !options.serial) missing.push({ file: scenario.name ?? 'scenario', path: `steps[${step.index}].${step.kind}`, message: 'no serial driver' });
  }
  if (missing.length > 0) throw new ScenarioError(missing.sort((a, b) => stepIndexOf(a.path) - stepIndexOf(b.path)));

  const t0 = clock.now();
  const meters = new Map<string, { metrics: Record<string, number>; state: Record<string, boolean> }>();
  let reported: Promise<void> = Promise.resolve();
  const failed: StepResult[] = [];
  let executed = 0;
  let maxLateMs = 0;
  let aborted = false;
  let cycles = 0;

  const sleepUntil = (t: number): Promise<boolean> => {
    if (signal?.aborted) return Promise.resolve(false);
    const wait = t - clock.now();
    if (wait <= 0) return Promise.resolve(true);
    return new Promise<boolean>((resolve) => {
      const onAbort = (): void => {
        clock.clearTimeout(handle);
        resolve(false);
      };
      const handle = clock.setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve(true);
      }, wait);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  };

  const act = async (step: ScenarioStep): Promise<void> => {
    switch (step.kind) {
      case 'mqtt':
        return (options.mqtt(step.device) as ScenarioSender).send(step.send, { qos: step.qos });
      case 'meter': {
        const key = `${step.meter.bus}\u0000${step.meter.address}`;
        const prev = meters.get(key) ?? { metrics: {}, state: {} };
        const next = { metrics: { ...prev.metrics, ...step.sample.metrics }, state: { ...prev.state, ...step.sample.state } };
        meters.set(key, next);
        return (options.serial as SerialDriver).setMeterSample(step.meter, { metrics: { ...next.metrics }, state: { ...next.state } });
      }
      case 'rf':
        return (options.serial as SerialDriver).pressRf(step.rf, step.key);
    }
  };

  run: for (let cycle = 0; ; cycle++) {
    const base = cycle * scenario.period;
    meters.clear();
    for (const step of scenario.steps) {
      const scheduledAt = base + step.at;
      if (!(await sleepUntil(t0 + scheduledAt))) {
        aborted = true;
        break run;
      }
      const startedAt = clock.now() - t0;
      maxLateMs = Math.max(maxLateMs, startedAt - scheduledAt);
      executed++;
      const settled = (error?: unknown): StepResult => ({
        step,
        cycle,
        scheduledAt,
        startedAt,
        settledAt: clock.now() - t0,
        ...(error === undefined ? {} : { error: describeError(error) }),
      });
      // act is async: a driver that throws becomes a rejection here.
      const outcome = act(step).then(
        () => settled(),
        (err: unknown) => settled(err ?? 'failed'),
      );
      // Results are reported in start order, however the acknowledgements come back.
      const report = reported.then(() => outcome).then((result) => {
        if (result.error !== undefined) failed.push(result);
        try {
          options.onStep?.(result);
        } catch {
          // A reporting callback must not stop the scenario.
        }
      });
      reported = report;
    }
    cycles = cycle + 1;
    if (!scenario.loop || (options.cycles !== undefined && cycles >= options.cycles)) break;
    // The next cycle starts `period` after this one did.
  }
  await reported;
  return { executed, failed, cycles, aborted, maxLateMs };
}

function stepIndexOf(path: string): number {
  return Number(/^steps\[(\d+)\]/.exec(path)?.[1] ?? 0);
}

function describeError(error: unknown): string {
  if (error instanceof Error) return error.message;
  return typeof error === 'string' ? error : JSON.stringify(error) ?? 'failed';
}

/** What the driver needs of a simulated meter (modbus-slave.ts SimulatedMeter has it). */
export interface MeterHandle {
  update(change: (current: EncodeSample) => EncodeSample): void;
}
/** What the driver needs of an RF bridge simulator (rf-emitter.ts RfEmitter has it). */
export interface RfHandle {
  press(rfId: string, key: number): Promise<void>;
}

/**
 * The SerialDriver over the serial simulators: a meter step changes the registers it names on top
 * of what the meter serves now (its healthy default at first); an rf step is one press on the
 * bridge of that bus. A target with no simulator fails the step.
 */
export function createSerialDriver(targets: { meter(target: MeterTarget): MeterHandle | undefined; rf(bus: string): RfHandle | undefined }): SerialDriver {
  return {
    setMeterSample(target, sample) {
      const meter = targets.meter(target);
      if (!meter) throw new Error(`no simulated meter at address ${target.address} on bus ${target.bus}`);
      meter.update((current) => ({
        ...current,
        metrics: { ...current.metrics, ...sample.metrics },
        state: { ...current.state, ...sample.state },
      }));
    },
    pressRf(target, key) {
      const bridge = targets.rf(target.bus);
      if (!bridge) return Promise.reject(new Error(`no simulated RF bridge on bus ${target.bus}`));
      return bridge.press(target.id, key);
    },
  };
}

/** A SerialDriver that only records, for tests and for `gridedge simulate` without serial simulators. */
export function createRecordingSerialDriver(clock: SimClock = systemClock) {
  const calls: ({ at: number; kind: 'meter'; target: MeterTarget; sample: EncodeSample } | { at: number; kind: 'rf'; target: RfTarget; key: number })[] = [];
  const driver: SerialDriver & { readonly calls: typeof calls } = {
    calls,
    setMeterSample(target, sample) {
      calls.push({ at: clock.now(), kind: 'meter', target, sample });
    },
    pressRf(target, key) {
      calls.push({ at: clock.now(), kind: 'rf', target, key });
    },
  };
  return driver;
}
