import fc from 'fast-check';

/*
 * Mutators for the bad-input campaign (issue 8 item 2): each turns a valid wire input into one of
 * the classes of bad input the issue names. Shared by the fuzz tests; they work on bytes so that
 * the same mutators serve MQTT payloads and HTTP bodies.
 */

/** Invalid UTF-8: a lone continuation byte, an overlong '/', a UTF-16 surrogate, a truncated sequence, a 5-byte form, 0xFF. */
export const INVALID_UTF8: readonly (readonly number[])[] = [[0x80], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xe2, 0x82], [0xf8, 0x88, 0x80, 0x80, 0x80], [0xff], [0xc3]];

/** Numbers JSON.stringify never writes, and look-alikes that are not JSON numbers at all. */
export const ODD_NUMBERS: readonly string[] = [
  '1e309',
  '-1e309',
  '-0',
  '18446744073709551616',
  '123456789012345678901234567890',
  '1e-400',
  '"NaN"',
  'NaN',
  'Infinity',
  '0x10',
  '1.',
  '.5',
  '+1',
  '"85"',
  '9007199254740993',
];

/** Every mutation class, by name: the figures in docs/RELIABILITY.md count cases per class. */
export const MUTATION_CLASSES = [
  'byte_flip',
  'truncate',
  'type_swap',
  'invalid_utf8',
  'nul',
  'deep_nesting',
  'odd_number',
  'huge_string',
  'duplicate_key',
  'bom',
  'random_bytes',
] as const;
export type MutationClass = (typeof MUTATION_CLASSES)[number];

export interface Mutated {
  readonly classes: readonly MutationClass[];
  readonly bytes: Buffer;
}

type Mutator = fc.Arbitrary<(input: Buffer) => Buffer>;

function insertAt(input: Buffer, at: number, bytes: Uint8Array): Buffer {
  const i = Math.min(at, input.length);
  return Buffer.concat([input.subarray(0, i), bytes, input.subarray(i)]);
}

/** The JSON value of `input`; undefined if it is not JSON or nests too deep for these (recursive) mutators. */
function parsed(input: Buffer): unknown {
  let depth = 0;
  for (const b of input) {
    if (b === 0x5b || b === 0x7b) depth++;
    else if (b === 0x5d || b === 0x7d) depth--;
    if (depth > 200) return undefined;
  }
  try {
    return JSON.parse(input.toString('utf8')) as unknown;
  } catch {
    return undefined;
  }
}

/** Paths of every value inside a JSON value (objects and arrays included, the root excluded). */
export function paths(value: unknown, prefix: (string | number)[] = [], out: (string | number)[][] = []): (string | number)[][] {
  const entries: [string | number, unknown][] = Array.isArray(value)
    ? (value as unknown[]).map((v, i): [number, unknown] => [i, v])
    : value !== null && typeof value === 'object'
      ? Object.entries(value)
      : [];
  for (const [k, v] of entries) {
    out.push([...prefix, k]);
    paths(v, [...prefix, k], out);
  }
  return out;
}

function replaceAt(value: unknown, path: readonly (string | number)[], next: unknown): unknown {
  if (path.length === 0) return next;
  const [head, ...rest] = path as [string | number, ...(string | number)[]];
  if (Array.isArray(value)) return (value as unknown[]).map((v, i) => (i === head ? replaceAt(v, rest, next) : v));
  const obj = value as Record<string, unknown>;
  return { ...obj, [head]: replaceAt(obj[head], rest, next) };
}

/** A JSON value with the text at one path replaced by raw JSON text (for values JSON.stringify cannot write). */
function withRawAt(value: unknown, pick: number, raw: string): Buffer | undefined {
  const all = paths(value);
  if (all.length === 0) return undefined;
  const marker = '"\u0001MARK\u0001"';
  const path = all[pick % all.length] as (string | number)[];
  return Buffer.from(JSON.stringify(replaceAt(value, path, '\u0001MARK\u0001')).replace(marker, raw), 'utf8');
}

const OTHER_TYPES: readonly unknown[] = [null, true, false, 0, -1, 85.5, '', 'true', '85', [], {}, [1], { smoke: true }];

const byteFlip: Mutator = fc
  .array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 4 })
  .map((flips) => (input) => {
    const out = Buffer.from(input);
    for (const [at, x] of flips) if (out.length > 0) out[at % out.length] = (out[at % out.length] ?? 0) ^ x;
    return out;
  });

const truncate: Mutator = fc.nat().map((n) => (input) => input.subarray(0, input.length === 0 ? 0 : n % input.length));

const typeSwap: Mutator = fc.tuple(fc.nat(), fc.constantFrom(...OTHER_TYPES)).map(([pick, next]) => (input) => {
  const v = parsed(input);
  const all = paths(v);
  if (all.length === 0) return Buffer.from(JSON.stringify(next), 'utf8');
  return Buffer.from(JSON.stringify(replaceAt(v, all[pick % all.length] as (string | number)[], next)), 'utf8');
});

const invalidUtf8: Mutator = fc.tuple(fc.nat(), fc.constantFrom(...INVALID_UTF8)).map(([at, seq]) => (input) => insertAt(input, input.length === 0 ? 0 : at % (input.length + 1), Uint8Array.from(seq)));

/** A raw NUL byte anywhere, or an escaped `\u0000` inside a string value. */
const nul: Mutator = fc.tuple(fc.nat(), fc.boolean()).map(([at, escaped]) => (input) => {
  if (escaped) {
    const text = input.toString('utf8');
    const q = text.indexOf('"', at % (text.length + 1));
    if (q >= 0) return Buffer.from(`${text.slice(0, q + 1)}\\u0000${text.slice(q + 1)}`, 'utf8');
  }
  return insertAt(input, input.length === 0 ? 0 : at % (input.length + 1), Uint8Array.of(0));
});

/** A value replaced by `depth` nested arrays or objects, or the payload replaced by unbalanced brackets. */
export function nested(depth: number, open = '[', close = ']'): string {
  return open.repeat(depth) + close.repeat(depth);
}
const deepNesting = (maxBytes: number): Mutator =>
  fc.tuple(fc.nat(), fc.integer({ min: 100, max: Math.max(100, Math.floor(maxBytes / 2) - 64) }), fc.constantFrom('array', 'object', 'unbalanced')).map(([pick, depth, shape]) => (input) => {
    if (shape === 'unbalanced') return Buffer.from('['.repeat(depth * 2), 'utf8');
    const raw = shape === 'array' ? nested(depth) : `${'{"a":'.repeat(Math.floor(depth / 3))}1${'}'.repeat(Math.floor(depth / 3))}`;
    return withRawAt(parsed(input), pick, raw) ?? Buffer.from(raw, 'utf8');
  });

const oddNumber: Mutator = fc.tuple(fc.nat(), fc.constantFrom(...ODD_NUMBERS)).map(([pick, raw]) => (input) => {
  const text = input.toString('utf8');
  const numbers = [...text.matchAll(/-?\d+(\.\d+)?([eE][+-]?\d+)?/g)];
  const m = numbers[pick % Math.max(1, numbers.length)];
  if (!m || m.index === undefined) return withRawAt(parsed(input), pick, raw) ?? Buffer.from(raw, 'utf8');
  return Buffer.from(text.slice(0, m.index) + raw + text.slice(m.index + m[0].length), 'utf8');
});

const hugeString = (maxBytes: number): Mutator =>
  fc.tuple(fc.nat(), fc.integer({ min: 1_000, max: Math.max(1_000, maxBytes - 200) }), fc.constantFrom('x', '火', '\\"', '\\u0000')).map(([pick, n, unit]) => (input) =>
    withRawAt(parsed(input), pick, `"${unit.repeat(Math.ceil(n / Buffer.byteLength(unit)))}"`) ?? Buffer.from(`"${'x'.repeat(n)}"`, 'utf8'),
  );

/** `{"k": v, …}` → `{"k": other, "k": v, …}` or `{…, "k": other}`: JSON.parse keeps the last. */
const duplicateKey: Mutator = fc.tuple(fc.nat(), fc.constantFrom(...OTHER_TYPES), fc.boolean()).map(([pick, other, last]) => (input) => {
  const v = parsed(input);
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return input;
  const keys = Object.keys(v);
  const key = keys[pick % Math.max(1, keys.length)];
  if (key === undefined) return input;
  const text = JSON.stringify(v);
  const dup = `${JSON.stringify(key)}:${JSON.stringify(other)}`;
  return Buffer.from(last ? `${text.slice(0, -1)},${dup}}` : `{${dup},${text.slice(1)}`, 'utf8');
});

const bom: Mutator = fc.constantFrom(Uint8Array.of(0xef, 0xbb, 0xbf), Uint8Array.of(0xff, 0xfe), Uint8Array.of(0xfe, 0xff), Uint8Array.of(0xef, 0xbb, 0xbf, 0xef, 0xbb, 0xbf)).map((b) => (input) => Buffer.concat([b, input]));

const randomBytes: Mutator = fc.uint8Array({ maxLength: 512 }).map((b) => () => Buffer.from(b));

/** One to three mutations of `input`, within `maxBytes` (the broker's payload limit). */
export function mutationOf(input: Buffer, maxBytes = 16_384): fc.Arbitrary<Mutated> {
  const byClass: Record<MutationClass, Mutator> = {
    byte_flip: byteFlip,
    truncate,
    type_swap: typeSwap,
    invalid_utf8: invalidUtf8,
    nul,
    deep_nesting: deepNesting(maxBytes),
    odd_number: oddNumber,
    huge_string: hugeString(maxBytes),
    duplicate_key: duplicateKey,
    bom,
    random_bytes: randomBytes,
  };
  const one = fc.constantFrom(...MUTATION_CLASSES).chain((c) => byClass[c].map((f) => ({ c, f })));
  return fc.array(one, { minLength: 1, maxLength: 3 }).map((steps) => {
    let bytes = input;
    for (const { f } of steps) bytes = f(bytes);
    return { classes: steps.map((s) => s.c), bytes: bytes.length > maxBytes ? bytes.subarray(0, maxBytes) : bytes };
  });
}
