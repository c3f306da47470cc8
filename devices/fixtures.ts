import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';

/**
 * Fixtures are the catalogue's executable documentation: for every model, raw wire input and the
 * exact reading (or typed error) it must give. They live in `devices/models/<id>/fixtures/*.json`,
 * each file an array of fixtures. The contract test runs them all; the simulators replay them.
 */
const ContextSchema = z.object({
  deviceId: z.string(),
  receivedAt: z.number().int(),
  previous: z.record(z.string(), z.boolean()).optional(),
  /** Modbus slave address (modbus-rtu models). */
  address: z.number().int().optional(),
  /** RF id → device id, for the registry the rf stream is resolved against (rf-bridge models). */
  rfIds: z.record(z.string(), z.string()).optional(),
});

const InputSchema = z.union([
  z.object({ json: z.unknown() }).strict(),
  z.object({ text: z.string() }).strict(),
  z.object({ hex: z.string() }).strict(),
  /** A byte stream as it arrives from a serial port: chunks with gateway times (ms from fixture start). */
  z.object({ stream: z.array(z.object({ at: z.number().int().nonnegative(), hex: z.string() })) }).strict(),
]);

const ExpectSchema = z.union([
  z.object({ reading: z.record(z.string(), z.unknown()) }).strict(),
  z.object({ error: z.string() }).strict(),
  /** For streams: every reading in order, the unregistered ids heard, and the error codes of rejected presses. */
  z
    .object({
      readings: z.array(z.record(z.string(), z.unknown())),
      unregistered: z.array(z.string()).optional(),
      errors: z.array(z.string()).optional(),
    })
    .strict(),
]);

export const FixtureSchema = z.object({
  name: z.string().min(1),
  context: ContextSchema,
  input: InputSchema,
  expect: ExpectSchema,
});
export type Fixture = z.infer<typeof FixtureSchema>;

export const MODELS_DIR = fileURLToPath(new URL('./models/', import.meta.url));

/** Parses hex written with or without spaces: `"01 03 00 00"`. */
export function hexToBytes(hex: string): Buffer {
  const clean = hex.replace(/\s+/g, '');
  if (!/^([0-9a-fA-F]{2})*$/.test(clean)) throw new Error(`bad hex in fixture: ${hex}`);
  return Buffer.from(clean, 'hex');
}

/** The raw bytes of a single-message fixture (json, text or hex input). */
export function fixtureBytes(input: Fixture['input']): Buffer {
  if ('json' in input) return Buffer.from(JSON.stringify(input.json), 'utf8');
  if ('text' in input) return Buffer.from(input.text, 'utf8');
  if ('hex' in input) return hexToBytes(input.hex);
  throw new Error('a stream fixture has no single payload');
}

export function loadFixtures(modelId: string, modelsDir: string = MODELS_DIR): Fixture[] {
  const dir = join(modelsDir, modelId, 'fixtures');
  const files = readdirSync(dir).filter((f) => f.endsWith('.json')).sort();
  return files.flatMap((file) => {
    const raw: unknown = JSON.parse(readFileSync(join(dir, file), 'utf8'));
    const parsed = z.array(FixtureSchema).safeParse(raw);
    if (!parsed.success) throw new Error(`${join(dir, file)}: ${z.prettifyError(parsed.error)}`);
    return parsed.data;
  });
}
