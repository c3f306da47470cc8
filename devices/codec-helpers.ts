import type { z } from 'zod';
import { fail, ok, type Result } from './errors.js';
import type { DeviceState, DownlinkCommand } from './model.js';

/** Battery hysteresis shared by every battery-powered model: low below 20 %, ok again from 25 %. */
export const BATTERY_LOW_PCT = 20;
export const BATTERY_OK_PCT = 25;

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Bytes → JSON value; non-UTF-8 and malformed JSON are typed errors, never exceptions (SPEC §3). */
export function decodeJson(payload: Uint8Array): Result<unknown> {
  let text: string;
  try {
    text = utf8.decode(payload);
  } catch {
    return fail('DEV_ERR_UTF8');
  }
  try {
    return ok(JSON.parse(text) as unknown);
  } catch (err) {
    return fail('DEV_ERR_JSON', (err as Error).message);
  }
}

/**
 * Validates a wire value against a model's zod schema. Out-of-range numbers become
 * DEV_ERR_RANGE (battery 150), everything else DEV_ERR_SCHEMA, with the path of the first issue.
 */
export function parseWire<S extends z.ZodType>(schema: S, value: unknown): Result<z.infer<S>> {
  const parsed = schema.safeParse(value);
  if (parsed.success) return ok(parsed.data);
  const issue = parsed.error.issues[0];
  const path = issue?.path.map((p) => (typeof p === 'symbol' ? String(p) : p)) ?? [];
  const where = path.length > 0 ? `${path.join('.')}: ` : '';
  const code = issue?.code === 'too_big' || issue?.code === 'too_small' ? 'DEV_ERR_RANGE' : 'DEV_ERR_SCHEMA';
  return fail(code, `${where}${issue?.message ?? 'invalid'}`, path);
}

/** Flags that went false → true and true → false between two states. A flag missing from `previous` counts as false. */
export function stateChanges(previous: DeviceState | undefined, next: DeviceState): { rose: string[]; fell: string[] } {
  const rose: string[] = [];
  const fell: string[] = [];
  for (const [flag, value] of Object.entries(next)) {
    const before = previous?.[flag] ?? false;
    if (value && !before) rose.push(flag);
    if (!value && before) fell.push(flag);
  }
  return { rose, fell };
}

/** Battery low with hysteresis: between the two thresholds the previous flag stands. */
export function batteryLow(pct: number, previous: boolean | undefined): boolean {
  if (pct < BATTERY_LOW_PCT) return true;
  if (pct >= BATTERY_OK_PCT) return false;
  return previous ?? false;
}

/** SPEC §3.3: every MQTT model takes the same JSON downlink. */
export function encodeJsonCommand(cmd: DownlinkCommand): Buffer {
  return Buffer.from(JSON.stringify(cmd), 'utf8');
}
