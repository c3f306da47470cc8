import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MODELS } from '../../../devices/catalogue.js';
import type { Result } from '../../../devices/errors.js';
import { MODELS_DIR, fixtureBytes, loadFixtures, type Fixture } from '../../../devices/fixtures.js';
import type { Model } from '../../../devices/model.js';
import { ReadingSchema, type ReadingDraft } from '../../../devices/reading.js';
import { runRfStream } from '../../../devices/rf/run-stream.js';
import { VOCABULARY } from '../../../devices/vocabulary.js';

// The catalogue's contract (issue 2): every model, every fixture, the exact reading or typed error.

interface Outcome {
  readings: ReadingDraft[];
  errors: string[];
  unregistered: string[];
}

function collect(results: Result<ReadingDraft>[]): Outcome {
  const out: Outcome = { readings: [], errors: [], unregistered: [] };
  for (const r of results) {
    if (r.ok) out.readings.push(r.value);
    else out.errors.push(r.error.code);
  }
  return out;
}

function run(model: Model, f: Fixture): Outcome {
  const { input, context } = f;
  switch (model.transport) {
    case 'mqtt':
      return collect([model.decode(fixtureBytes(input), context)]);
    case 'modbus-rtu':
      return collect([model.decode(fixtureBytes(input), { ...context, address: context.address ?? 1 })]);
    case 'rf-bridge': {
      if (!('stream' in input)) throw new Error(`${f.name}: rf-bridge fixtures take a stream input`);
      const out = runRfStream(input.stream, context, model);
      return { readings: out.readings, errors: out.errors.map((e) => e.code), unregistered: out.unregistered };
    }
  }
}

const PLACE = { grid: '110101013001002', building: '7', room: 'B1-3' };

describe.each([...MODELS.values()])('model $id', (model) => {
  const fixtures = loadFixtures(model.id);

  it('has valid and invalid fixtures', () => {
    expect(fixtures.some((f) => !('error' in f.expect))).toBe(true);
    expect(fixtures.some((f) => 'error' in f.expect || ('readings' in f.expect && (f.expect.errors ?? []).length > 0))).toBe(true);
  });

  it.each(fixtures.map((f) => [f.name, f] as const))('fixture: %s', (_name, f) => {
    const out = run(model, f);
    const expected = f.expect;
    if ('error' in expected) {
      expect(out.readings).toEqual([]);
      expect(out.errors).toEqual([expected.error]);
    } else if ('reading' in expected) {
      expect(out.errors).toEqual([]);
      expect(out.readings).toEqual([expected.reading]);
    } else {
      expect(out.readings).toEqual(expected.readings);
      expect(out.unregistered).toEqual(expected.unregistered ?? []);
      expect(out.errors).toEqual(expected.errors ?? []);
    }
    // Every reading a codec makes is a canonical reading once it has a place.
    for (const r of out.readings) {
      const parsed = ReadingSchema.safeParse({ ...r, place: PLACE });
      expect(parsed.success, parsed.success ? '' : parsed.error.message).toBe(true);
    }
  });

  it('declares only its kind’s vocabulary', () => {
    const vocab = VOCABULARY[model.kind];
    for (const m of model.produces.metrics) expect(vocab.metrics).toContain(m);
    for (const s of model.produces.states) expect(vocab.states).toContain(s);
    for (const e of model.produces.events) expect(vocab.events).toContain(e);
  });

  it('fixtures cover every metric, state flag and event it produces', () => {
    const seen = { metrics: new Set<string>(), states: new Set<string>(), events: new Set<string>() };
    for (const f of fixtures) {
      for (const r of run(model, f).readings) {
        Object.keys(r.metrics).forEach((k) => seen.metrics.add(k));
        Object.entries(r.state).forEach(([k, v]) => v && seen.states.add(k));
        r.events.forEach((e) => seen.events.add(e));
      }
    }
    expect([...model.produces.metrics].filter((m) => !seen.metrics.has(m))).toEqual([]);
    expect([...model.produces.states].filter((s) => !seen.states.has(s))).toEqual([]);
    expect([...model.produces.events].filter((e) => !seen.events.has(e))).toEqual([]);
  });
});

describe('the catalogue', () => {
  it('holds every model folder, and only those', () => {
    const folders = readdirSync(MODELS_DIR).filter((name) => statSync(join(MODELS_DIR, name)).isDirectory());
    expect(folders.sort()).toEqual([...MODELS.keys()].sort());
  });

  it('has the five v1 models of SPEC §2 with their kinds and transports', () => {
    const summary = Object.fromEntries([...MODELS.values()].map((m) => [m.id, `${m.kind}/${m.transport}`]));
    expect(summary).toEqual({
      'smoke-json': 'smoke/mqtt',
      'smoke-ctw': 'smoke/mqtt',
      'pager-json': 'pager/mqtt',
      'elec-ers1': 'electrical/modbus-rtu',
      'pager-rf': 'pager/rf-bridge',
    });
  });
});
