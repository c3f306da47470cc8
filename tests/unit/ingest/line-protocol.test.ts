import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Reading } from '../../../devices/reading.js';
import { KINDS, SERVICES, VOCABULARY } from '../../../devices/vocabulary.js';
import { escapeMeasurement, escapeTag, incidentToLine, quoteString, readingToLine } from '../../../ingest/sinks/line-protocol.js';

// SPEC §5 line protocol. The parser below follows InfluxDB 1.x's own (models/points.go, checked
// against influxd 1.6.7): in measurement, tag and field-key sections a backslash takes the next
// character with it and only `\,` `\=` `\ ` are unescaped; a tag value may not be empty or end in a
// backslash; string fields unescape `\"` and `\\`; a number is a float unless it ends in `i`.

type FieldValue = { type: 'float'; value: number } | { type: 'integer'; value: number } | { type: 'boolean'; value: boolean } | { type: 'string'; value: string };

interface ParsedLine {
  measurement: string;
  tags: Record<string, string>;
  fields: Record<string, FieldValue>;
  timestamp: number;
}

function unescapeKey(raw: string, specials: string): string {
  let out = '';
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i] as string;
    const next = raw[i + 1];
    if (c === '\\' && next !== undefined && specials.includes(next)) {
      out += next;
      i++;
    } else {
      out += c;
    }
  }
  return out;
}

/** Scans from `i` to the first unescaped character in `stops`; a backslash takes the next character along. */
function scan(line: string, i: number, stops: string): number {
  while (i < line.length) {
    const c = line[i] as string;
    if (c === '\\') {
      i += 2;
      continue;
    }
    if (stops.includes(c)) return i;
    i++;
  }
  return line.length;
}

function parseLine(line: string): ParsedLine {
  let i = scan(line, 0, ', ');
  const measurement = unescapeKey(line.slice(0, i), ', ');
  if (measurement === '') throw new Error('missing measurement');
  const tags: Record<string, string> = {};
  while (line[i] === ',') {
    const keyEnd = scan(line, i + 1, '=, ');
    if (line[keyEnd] !== '=') throw new Error(`tag without "=" at ${i}`);
    const valueEnd = scan(line, keyEnd + 1, ', ');
    const rawKey = line.slice(i + 1, keyEnd);
    const rawValue = line.slice(keyEnd + 1, valueEnd);
    if (rawKey === '' || rawValue === '') throw new Error('empty tag key or value');
    if (/[\r\n]/.test(rawKey + rawValue)) throw new Error('a line break inside a tag ends the line');
    if (rawKey.endsWith('\\') || rawValue.endsWith('\\')) throw new Error('invalid tag format (trailing backslash)');
    tags[unescapeKey(rawKey, ',= ')] = unescapeKey(rawValue, ',= ');
    i = valueEnd;
  }
  if (line[i] !== ' ') throw new Error(`expected a space before the fields at ${i}`);
  i++;
  const fields: Record<string, FieldValue> = {};
  for (;;) {
    const keyEnd = scan(line, i, '=');
    const key = unescapeKey(line.slice(i, keyEnd), ',= ');
    if (key === '' || line[keyEnd] !== '=') throw new Error(`bad field at ${i}`);
    let j = keyEnd + 1;
    let value: FieldValue;
    if (line[j] === '"') {
      let s = '';
      j++;
      for (;;) {
        const c = line[j];
        if (c === undefined) throw new Error('unterminated string');
        if (c === '\\' && (line[j + 1] === '"' || line[j + 1] === '\\')) {
          s += line[j + 1];
          j += 2;
          continue;
        }
        if (c === '"') {
          j++;
          break;
        }
        s += c;
        j++;
      }
      value = { type: 'string', value: s };
    } else {
      const end = scan(line, j, ', ');
      const raw = line.slice(j, end);
      j = end;
      if (/^(t|T|true|True|TRUE)$/.test(raw)) value = { type: 'boolean', value: true };
      else if (/^(f|F|false|False|FALSE)$/.test(raw)) value = { type: 'boolean', value: false };
      else if (/^-?\d+i$/.test(raw)) value = { type: 'integer', value: Number(raw.slice(0, -1)) };
      else if (/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(raw)) value = { type: 'float', value: Number(raw) };
      else throw new Error(`invalid number ${JSON.stringify(raw)}`);
    }
    fields[key] = value;
    if (line[j] === ',') {
      i = j + 1;
      continue;
    }
    if (line[j] !== ' ') throw new Error(`expected a timestamp at ${j}`);
    i = j + 1;
    break;
  }
  const ts = line.slice(i);
  if (!/^-?\d+$/.test(ts)) throw new Error(`bad timestamp ${JSON.stringify(ts)}`);
  return { measurement, tags, fields, timestamp: Number(ts) };
}

const PLACE = { grid: '110101013001002', building: '7', room: 'B1-3' };

function reading(overrides: Partial<Reading>): Reading {
  return {
    deviceId: 'SMK-0001',
    model: 'smoke-json',
    kind: 'smoke',
    ts: 1733300000000,
    receivedAt: 1733300000012,
    metrics: {},
    state: {},
    events: [],
    place: PLACE,
    ...overrides,
  };
}

describe('readingToLine: exact lines', () => {
  it('smoke (the SPEC §2 example)', () => {
    const line = readingToLine(
      reading({
        metrics: { battery_pct: 85, rssi_dbm: -71 },
        state: { smoke: true, tamper: false, fault: false, battery_low: false },
        events: ['fire_alarm'],
      }),
    );
    expect(line).toBe(
      'smoke,building=7,device_id=SMK-0001,grid=110101013001002,model=smoke-json,room=B1-3 ' +
        'battery_pct=85,rssi_dbm=-71,smoke=true,tamper=false,fault=false,battery_low=false,events="fire_alarm" 1733300000000',
    );
  });

  it('electrical, several events comma-joined, fractional metrics', () => {
    const line = readingToLine(
      reading({
        deviceId: 'ELC-0001',
        model: 'elec-ers1',
        kind: 'electrical',
        metrics: { voltage_v: 221.3, current_a: 4.125, power_w: 912, power_factor: 0.98, frequency_hz: 50, energy_kwh: 1234.56, residual_ma: 12, t1_c: 31.5, arc_count: 0 },
        state: { short_circuit: true, overheat: true, leakage: false },
        events: ['short_circuit', 'overheat'],
      }),
    );
    expect(line).toBe(
      'electrical,building=7,device_id=ELC-0001,grid=110101013001002,model=elec-ers1,room=B1-3 ' +
        'voltage_v=221.3,current_a=4.125,power_w=912,power_factor=0.98,frequency_hz=50,energy_kwh=1234.56,residual_ma=12,t1_c=31.5,arc_count=0,' +
        'short_circuit=true,overheat=true,leakage=false,events="short_circuit,overheat" 1733300000000',
    );
  });

  it('pager with a service call', () => {
    const line = readingToLine(
      reading({
        deviceId: 'PGR-0042',
        model: 'pager-json',
        kind: 'pager',
        ts: 1733300001234,
        metrics: { battery_pct: 64 },
        state: { battery_low: false },
        events: ['service_call'],
        service: 'medicine',
        place: { grid: '110101013001002', building: '5', room: '302' },
      }),
    );
    expect(line).toBe(
      'pager,building=5,device_id=PGR-0042,grid=110101013001002,model=pager-json,room=302 ' +
        'battery_pct=64,battery_low=false,events="service_call",service="medicine" 1733300001234',
    );
  });

  it('leaves out `events` when there are none', () => {
    const line = readingToLine(reading({ metrics: { battery_pct: 90 } }));
    expect(line).toBe('smoke,building=7,device_id=SMK-0001,grid=110101013001002,model=smoke-json,room=B1-3 battery_pct=90 1733300000000');
  });

  it('omits empty tag values (InfluxDB rejects them)', () => {
    const line = readingToLine(reading({ metrics: { battery_pct: 90 }, place: { grid: '110101013001002', building: '', room: '' } }));
    expect(line).toBe('smoke,device_id=SMK-0001,grid=110101013001002,model=smoke-json battery_pct=90 1733300000000');
    expect(parseLine(line as string).tags).toEqual({ device_id: 'SMK-0001', grid: '110101013001002', model: 'smoke-json' });
  });

  it('has no line for a reading without any field', () => {
    expect(readingToLine(reading({}))).toBeNull();
  });

  it('skips a non-finite metric instead of poisoning the point', () => {
    const line = readingToLine(reading({ metrics: { battery_pct: Number.NaN, rssi_dbm: -60 } }));
    expect(line).toBe('smoke,building=7,device_id=SMK-0001,grid=110101013001002,model=smoke-json,room=B1-3 rssi_dbm=-60 1733300000000');
  });

  it('writes whole numbers as floats: no `i` suffix, ever', () => {
    const line = readingToLine(reading({ metrics: { battery_pct: 85, rssi_dbm: 0 } })) as string;
    expect(line).toContain(' battery_pct=85,rssi_dbm=0 ');
    const fields = parseLine(line).fields;
    expect(fields.battery_pct).toEqual({ type: 'float', value: 85 });
    expect(fields.rssi_dbm).toEqual({ type: 'float', value: 0 });
  });

  it('writes large and small floats in a form InfluxDB parses as floats', () => {
    const line = readingToLine(reading({ kind: 'electrical', metrics: { energy_kwh: 1e21, current_a: 1e-7, power_w: -0 } })) as string;
    expect(line).toContain(' energy_kwh=1e+21,current_a=1e-7,power_w=0 ');
  });
});

describe('escaping', () => {
  it.each([
    ['plain', 'B1-3', 'B1-3'],
    ['space', 'room 3', 'room\\ 3'],
    ['comma', '3,4', '3\\,4'],
    ['equals', 'a=b', 'a\\=b'],
    ['UTF-8 with space and comma', '地下一层 3,号', '地下一层\\ 3\\,号'],
    ['backslash inside', 'B1\\3', 'B1\\3'],
    ['backslash before a comma', 'a\\,b', 'a/\\,b'],
    ['backslash at the end', 'end\\', 'end/'],
    ['two backslashes before a space', 'a\\\\ b', 'a//\\ b'],
    ['newline', 'a\nb', 'a\\ b'],
    ['carriage return + newline', 'a\r\nb', 'a\\ \\ b'],
    ['tab (no escape needed)', 'a\tb', 'a\tb'],
    ['double quote (no escape in tags)', 'say "hi"', 'say\\ "hi"'],
  ])('tag value: %s', (_name, input, expected) => {
    expect(escapeTag(input)).toBe(expected);
  });

  it.each([
    ['plain', 'smoke', 'smoke'],
    ['space', 'my measurement', 'my\\ measurement'],
    ['comma', 'a,b', 'a\\,b'],
    ['equals needs no escape', 'a=b', 'a=b'],
  ])('measurement: %s', (_name, input, expected) => {
    expect(escapeMeasurement(input)).toBe(expected);
  });

  it.each([
    ['plain', 'fire_alarm', '"fire_alarm"'],
    ['double quotes', 'say "hi"', '"say \\"hi\\""'],
    ['backslash', 'C:\\dir', '"C:\\\\dir"'],
    ['backslash before a quote', '\\"', '"\\\\\\""'],
    ['comma, space, equals need no escape', 'a, b=c', '"a, b=c"'],
    ['UTF-8', '地下一层 3,号', '"地下一层 3,号"'],
  ])('string field: %s', (_name, input, expected) => {
    expect(quoteString(input)).toBe(expected);
  });

  it('a UTF-8 room with spaces and commas round-trips through the line', () => {
    const line = readingToLine(reading({ metrics: { battery_pct: 50 }, place: { grid: '110101013001002', building: '7号楼', room: '地下一层 3,号' } })) as string;
    expect(line).toBe('smoke,building=7号楼,device_id=SMK-0001,grid=110101013001002,model=smoke-json,room=地下一层\\ 3\\,号 battery_pct=50 1733300000000');
    expect(parseLine(line).tags).toMatchObject({ building: '7号楼', room: '地下一层 3,号' });
  });
});

describe('incidentToLine', () => {
  it('writes the incident measurement (SPEC §5)', () => {
    const line = incidentToLine({
      id: 'inc-20241204-0001',
      type: 'electrical.short_circuit',
      severity: 'critical',
      status: 'open',
      grid: '110101013001002',
      deviceIds: ['ELC-0001', 'SMK-0001'],
      level: 0,
      at: 1733300000100,
    });
    expect(line).toBe(
      'incident,grid=110101013001002,severity=critical,status=open,type=electrical.short_circuit id="inc-20241204-0001",device_id="ELC-0001,SMK-0001",level=0 1733300000100',
    );
    expect(parseLine(line)).toEqual({
      measurement: 'incident',
      tags: { grid: '110101013001002', severity: 'critical', status: 'open', type: 'electrical.short_circuit' },
      fields: {
        id: { type: 'string', value: 'inc-20241204-0001' },
        device_id: { type: 'string', value: 'ELC-0001,SMK-0001' },
        level: { type: 'float', value: 0 },
      },
      timestamp: 1733300000100,
    });
  });
});

describe('the parser in this test', () => {
  // The round-trip property is only as good as the parser: it must refuse what influxd refuses.
  it.each([
    ['a tag value ending in a backslash', 'm,room=trail\\ f=1 1'],
    ['a backslash before a separator', 'm,room=a\\\\,b=x f=1 1'],
    ['an empty tag value', 'm,room= f=1 1'],
    ['NaN', 'm f=NaN 1'],
    ['a bare word', 'garbage line'],
  ])('refuses %s', (_name, line) => {
    expect(() => parseLine(line)).toThrow();
  });

  it('keeps a backslash that escapes nothing, as influxd does', () => {
    expect(parseLine('m,room=a\\b f=1 1').tags.room).toBe('a\\b');
  });
});

// ---- property: any reading's line parses back --------------------------------------------------

const SPECIAL = fc.constantFrom(' ', ',', '=', '"', '\\', '\n', '\r', '\t', '地', '号', '😀', 'é');
const text = (maxLength: number): fc.Arbitrary<string> =>
  fc.array(fc.oneof(SPECIAL, fc.string({ unit: 'binary', maxLength: 3 })), { maxLength }).map((parts) => parts.join('').slice(0, maxLength));

function subset<T>(values: readonly T[]): fc.Arbitrary<T[]> {
  return fc.subarray([...values]);
}

const readingArb: fc.Arbitrary<Reading> = fc.constantFrom(...KINDS).chain((kind) => {
  const vocab = VOCABULARY[kind];
  return fc.record({
    deviceId: text(64).filter((s) => s.length > 0),
    model: text(20).filter((s) => s.length > 0),
    kind: fc.constant(kind),
    ts: fc.integer({ min: 0, max: 4_102_444_800_000 }),
    receivedAt: fc.integer({ min: 0, max: 4_102_444_800_000 }),
    metrics: subset(vocab.metrics).chain((keys) =>
      fc.tuple(...keys.map(() => fc.double({ noNaN: true, noDefaultInfinity: true }))).map((values) => Object.fromEntries(keys.map((k, i) => [k, values[i] as number]))),
    ),
    state: subset(vocab.states).chain((keys) => fc.tuple(...keys.map(() => fc.boolean())).map((values) => Object.fromEntries(keys.map((k, i) => [k, values[i] as boolean])))),
    events: subset(vocab.events),
    service: fc.option(fc.constantFrom(...SERVICES), { nil: undefined }),
    place: fc.record({ grid: fc.stringMatching(/^\d{15}$/), building: text(64), room: text(64) }),
  });
});

/**
 * What a tag value must read back as: the original, except the characters line protocol cannot
 * carry in a tag, each replaced by one character (CR/LF → space, an unescapable backslash → `/`).
 */
function expectTagReadBack(original: string, readBack: string | undefined): void {
  if (original === '') {
    expect(readBack).toBeUndefined();
    return;
  }
  expect(readBack).toBeDefined();
  const back = readBack as string;
  expect(back.length).toBe(original.length);
  for (let i = 0; i < original.length; i++) {
    const o = original[i] as string;
    const b = back[i] as string;
    if (o === b) continue;
    if (o === '\n' || o === '\r') expect(b).toBe(' ');
    else if (o === '\\') expect(b).toBe('/');
    else expect.fail(`tag ${JSON.stringify(original)} read back as ${JSON.stringify(back)}`);
  }
  if (!/[\\\r\n]/.test(original)) expect(back).toBe(original);
}

describe('property: any reading round-trips', () => {
  it('parses back to the same measurement, tags, typed fields and time', () => {
    fc.assert(
      fc.property(readingArb, (r) => {
        const line = readingToLine(r);
        const hasFields = Object.keys(r.metrics).length + Object.keys(r.state).length + r.events.length > 0 || r.service !== undefined;
        if (!hasFields) {
          expect(line).toBeNull();
          return;
        }
        expect(line).not.toBeNull();
        const parsed = parseLine(line as string);
        expect(parsed.measurement).toBe(r.kind);
        expect(parsed.timestamp).toBe(r.ts);

        expect(Object.keys(parsed.tags).sort()).toEqual(
          ['device_id', 'model', 'grid', 'building', 'room'].filter((k) => (k === 'device_id' ? r.deviceId : k === 'model' ? r.model : r.place[k as 'grid' | 'building' | 'room']) !== '').sort(),
        );
        expectTagReadBack(r.deviceId, parsed.tags.device_id);
        expectTagReadBack(r.model, parsed.tags.model);
        expect(parsed.tags.grid).toBe(r.place.grid);
        expectTagReadBack(r.place.building, parsed.tags.building);
        expectTagReadBack(r.place.room, parsed.tags.room);

        const expected: Record<string, FieldValue> = {};
        for (const [k, v] of Object.entries(r.metrics)) expected[k] = { type: 'float', value: v === 0 ? 0 : v };
        for (const [k, v] of Object.entries(r.state)) expected[k] = { type: 'boolean', value: v };
        if (r.events.length > 0) expected.events = { type: 'string', value: r.events.join(',') };
        if (r.service !== undefined) expected.service = { type: 'string', value: r.service };
        const got = Object.fromEntries(Object.entries(parsed.fields).map(([k, v]) => [k, v.type === 'float' && v.value === 0 ? { type: 'float', value: 0 } : v]));
        expect(got).toEqual(expected);
      }),
      { numRuns: 2000 },
    );
  });

  it('string fields carry any text exactly', () => {
    fc.assert(
      fc.property(text(200), (s) => {
        const parsed = parseLine(`m f=${quoteString(s)} 1`);
        expect(parsed.fields.f).toEqual({ type: 'string', value: s });
      }),
      { numRuns: 2000 },
    );
  });

  it('tag values without backslashes or line breaks round-trip exactly', () => {
    fc.assert(
      fc.property(
        text(64).map((s) => s.replace(/[\\\r\n]/g, '')),
        (s) => {
          fc.pre(s !== '');
          expect(parseLine(`m,room=${escapeTag(s)} f=1 1`).tags.room).toBe(s);
        },
      ),
      { numRuns: 2000 },
    );
  });
});
