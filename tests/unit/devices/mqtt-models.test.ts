import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DEVICE_ERRORS } from '../../../devices/errors.js';
import type { DecodeContext, DeviceState, EncodeSample, MqttModel } from '../../../devices/model.js';
import { model as pagerJson } from '../../../devices/models/pager-json/index.js';
import { model as smokeCtw } from '../../../devices/models/smoke-ctw/index.js';
import { model as smokeJson } from '../../../devices/models/smoke-json/index.js';
import { ReadingSchema, type ReadingDraft } from '../../../devices/reading.js';
import { SERVICES } from '../../../devices/vocabulary.js';

// Behaviour of the three MQTT JSON models beyond their fixtures (the catalogue contract test runs
// those): encode → decode round trips, state carried forward, the self-test rule, and decode
// never throwing whatever arrives on `dev/{id}/up`.

const RECEIVED_AT = 1_733_300_000_012;
const TS = 1_733_300_000_000;
const PLACE = { grid: '110101013001002', building: '7', room: 'B1-3' };
const MODELS: readonly MqttModel[] = [smokeJson, smokeCtw, pagerJson];

const SMOKE_FLAGS = ['smoke', 'silenced', 'fault', 'battery_low', 'tamper', 'test'] as const;
const CLEAR: DeviceState = { smoke: false, silenced: false, fault: false, battery_low: false, tamper: false, test: false };

function ctx(deviceId: string, previous?: DeviceState): DecodeContext {
  return { deviceId, receivedAt: RECEIVED_AT, previous };
}

function json(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value), 'utf8');
}

function decoded(model: MqttModel, payload: Uint8Array, context: DecodeContext): ReadingDraft {
  const result = model.decode(payload, context);
  if (!result.ok) throw new Error(`${model.id}: ${result.error.code} ${result.error.message}`);
  return result.value;
}

function ctwMessage(status: number, battery = 85): Buffer {
  return json({ timestamp: TS, payload: { serviceData: { Alarm_Status: status, Battery_Level: battery, RSRP: -95 } } });
}

const smokeStateArb = fc.record({
  smoke: fc.boolean(),
  silenced: fc.boolean(),
  fault: fc.boolean(),
  battery_low: fc.boolean(),
  tamper: fc.boolean(),
  test: fc.boolean(),
});
/** A stored state may lack flags (a device never seen, an older store) or have other ones. */
const previousArb: fc.Arbitrary<DeviceState | undefined> = fc.option(
  fc.oneof(smokeStateArb, fc.dictionary(fc.constantFrom(...SMOKE_FLAGS, 'other'), fc.boolean())),
  { nil: undefined },
);
const batteryArb = fc.oneof(fc.integer({ min: 0, max: 100 }), fc.double({ min: 0, max: 100, noNaN: true }));
const deviceTsArb = fc.option(fc.integer({ min: RECEIVED_AT - 30 * 3_600_000, max: RECEIVED_AT + 30 * 3_600_000 }), { nil: undefined });

describe('model declarations', () => {
  it('heartbeats are half the offline time of SPEC §6 (smoke 1 h, pager-json 15 min)', () => {
    expect(2 * smokeJson.heartbeatMs).toBe(60 * 60_000);
    expect(2 * smokeCtw.heartbeatMs).toBe(60 * 60_000);
    expect(2 * pagerJson.heartbeatMs).toBe(15 * 60_000);
  });

  it.each(MODELS.map((m) => [m.id, m] as const))('%s sends the SPEC §3.3 JSON downlink', (_id, model) => {
    expect(JSON.parse(model.encodeCommand({ cmd: 'ack', incident: 'INC-1', text: '已收到' }).toString('utf8'))).toEqual({
      cmd: 'ack',
      incident: 'INC-1',
      text: '已收到',
    });
    expect(model.encodeCommand({ cmd: 'mute' }).toString('utf8')).toBe('{"cmd":"mute"}');
  });
});

describe('smoke models: every event survives encode → decode', () => {
  // For each event, the stored state it is an edge from: the flag it concerns the other way round.
  const BEFORE: Readonly<Record<string, DeviceState>> = {
    fire_clear: { ...CLEAR, smoke: true },
    fault_clear: { ...CLEAR, fault: true },
    battery_ok: { ...CLEAR, battery_low: true },
    tamper_clear: { ...CLEAR, tamper: true },
  };
  const AFTER: Readonly<Record<string, Partial<Record<(typeof SMOKE_FLAGS)[number], boolean>>>> = {
    fire_alarm: { smoke: true },
    silenced: { silenced: true },
    fault: { fault: true },
    battery_low: { battery_low: true },
    tamper: { tamper: true },
    self_test: { test: true },
  };
  const cases = [smokeJson, smokeCtw].flatMap((model) => model.produces.events.map((event) => [model.id, event, model] as const));

  it.each(cases)('%s %s', (_id, event, model) => {
    const previous = BEFORE[event] ?? CLEAR;
    const sample: EncodeSample = { ts: TS, metrics: { rssi_dbm: -80 }, events: [event] };
    const reading = decoded(model, model.encode(sample), ctx('SMK-0001', previous));
    expect(reading.events).toEqual([event]);
    expect(reading.ts).toBe(TS);
    expect(reading.metrics.rssi_dbm).toBe(-80);
    expect(reading.state).toEqual({ ...CLEAR, ...(event in BEFORE ? {} : AFTER[event]) });
  });

  it('smoke-json: a reading re-encoded decodes to itself against the same previous state', () => {
    const payloadArb = fc.record(
      {
        ts: deviceTsArb,
        smoke: fc.boolean(),
        battery: batteryArb,
        rssi: fc.integer({ min: -160, max: 0 }),
        tamper: fc.boolean(),
        fault: fc.boolean(),
        silenced: fc.boolean(),
        test: fc.boolean(),
      },
      { requiredKeys: ['smoke', 'battery'] },
    );
    fc.assert(
      fc.property(payloadArb, previousArb, (payload, previous) => {
        const context = ctx('SMK-0001', previous);
        const reading = decoded(smokeJson, json(payload), context);
        expect(decoded(smokeJson, smokeJson.encode(reading), context)).toStrictEqual(reading);
      }),
    );
  });

  it('smoke-json: a sample state comes back as given (outside a test), battery_low from the level', () => {
    fc.assert(
      fc.property(smokeStateArb, (state) => {
        fc.pre(!state.test);
        const reading = decoded(smokeJson, smokeJson.encode({ state }), ctx('SMK-0001', CLEAR));
        expect(reading.state).toEqual(state);
        expect(reading.metrics.battery_pct).toBe(state.battery_low ? 10 : 100);
        expect(reading.ts).toBe(RECEIVED_AT);
      }),
    );
  });

  it('smoke-ctw: a state-only sample is sent as its most urgent status', () => {
    const status = (state: DeviceState | undefined): unknown =>
      (JSON.parse(smokeCtw.encode(state === undefined ? {} : { state }).toString('utf8')) as { payload: { serviceData: { Alarm_Status: unknown } } })
        .payload.serviceData.Alarm_Status;
    expect(status(undefined)).toBe(12);
    expect(status(CLEAR)).toBe(7);
    expect(status({ smoke: true })).toBe(1);
    expect(status({ smoke: true, silenced: true })).toBe(2);
    expect(status({ smoke: true, test: true })).toBe(14);
    expect(status({ fault: true, tamper: true })).toBe(5);
    expect(status({ tamper: true, battery_low: true })).toBe(10);
    expect(status({ battery_low: true })).toBe(4);
  });

  it('smoke-ctw: the first event with a status wins, and no ts means an unsynced clock', () => {
    const reading = decoded(smokeCtw, smokeCtw.encode({ events: ['not_an_event', 'tamper', 'fire_alarm'] }), ctx('CTW-0001', CLEAR));
    expect(reading.events).toEqual(['tamper']);
    expect(reading.ts).toBe(RECEIVED_AT);
  });
});

describe('smoke-ctw: flags the status does not touch carry forward', () => {
  // SPEC §3.3 restated as the oracle: what each code sets. `test` belongs to the 14 message only;
  // `battery_low` follows Battery_Level unless the code is 4.
  const SETS: Readonly<Record<number, Partial<Record<(typeof SMOKE_FLAGS)[number], boolean>>>> = {
    1: { smoke: true },
    2: { silenced: true },
    4: { battery_low: true },
    5: { fault: true },
    7: { smoke: false, silenced: false, fault: false },
    10: { tamper: true },
    11: { tamper: false },
    12: {},
    14: { test: true },
  };
  const statuses = Object.keys(SETS).map(Number);

  it('for every status and every stored state', () => {
    fc.assert(
      fc.property(fc.constantFrom(...statuses), smokeStateArb, fc.constantFrom(10, 22, 90), (status, previous, battery) => {
        const reading = decoded(smokeCtw, ctwMessage(status, battery), ctx('CTW-0001', previous));
        const sets = SETS[status] ?? {};
        for (const flag of ['smoke', 'silenced', 'fault', 'tamper'] as const) {
          expect(reading.state[flag], `${flag} after ${status}`).toBe(sets[flag] ?? previous[flag]);
        }
        expect(reading.state.test).toBe(status === 14);
        const levelSays = battery < 20 ? true : battery >= 25 ? false : previous.battery_low;
        expect(reading.state.battery_low).toBe(status === 4 || levelSays);
      }),
    );
  });

  it('a repeated status gives its event once, then heartbeats', () => {
    for (const [status, event] of [
      [1, 'fire_alarm'],
      [2, 'silenced'],
      [5, 'fault'],
      [10, 'tamper'],
      [14, 'self_test'],
    ] as const) {
      const first = decoded(smokeCtw, ctwMessage(status), ctx('CTW-0001', CLEAR));
      expect(first.events).toEqual([event]);
      const second = decoded(smokeCtw, ctwMessage(status), ctx('CTW-0001', first.state));
      expect(second.events, `second ${status}`).toEqual(['heartbeat']);
      expect(second.state).toEqual(first.state);
    }
  });

  it('an unknown code is DEV_ERR_UNKNOWN_CODE with the path of Alarm_Status', () => {
    fc.assert(
      fc.property(fc.double({ noNaN: true, noDefaultInfinity: true }), (status) => {
        fc.pre(!statuses.includes(status));
        const result = smokeCtw.decode(ctwMessage(status), ctx('CTW-0001'));
        expect(result.ok ? 'ok' : result.error).toMatchObject({
          code: 'DEV_ERR_UNKNOWN_CODE',
          path: ['payload', 'serviceData', 'Alarm_Status'],
        });
      }),
    );
  });
});

describe('a self-test is not a fire (SPEC §6)', () => {
  it('smoke-json: a test message neither raises nor clears a fire, whatever its smoke flag', () => {
    fc.assert(
      fc.property(fc.boolean(), batteryArb, previousArb, (smoke, battery, previous) => {
        const reading = decoded(smokeJson, json({ ts: TS, smoke, battery, test: true }), ctx('SMK-0001', previous));
        expect(reading.state.smoke).toBe(previous?.smoke ?? false);
        expect(reading.events).not.toContain('fire_alarm');
        expect(reading.events).not.toContain('fire_clear');
        expect(reading.events.includes('self_test')).toBe(!(previous?.test ?? false));
      }),
    );
  });

  it('smoke-ctw: status 14 neither raises nor clears a fire', () => {
    fc.assert(
      fc.property(previousArb, (previous) => {
        const reading = decoded(smokeCtw, ctwMessage(14), ctx('CTW-0001', previous));
        expect(reading.state.smoke).toBe(previous?.smoke ?? false);
        expect(reading.events).not.toContain('fire_alarm');
        expect(reading.events).not.toContain('fire_clear');
      }),
    );
  });

  it.each([
    ['smoke-json', smokeJson, json({ ts: TS, smoke: true, battery: 85, test: true }), json({ ts: TS, smoke: true, battery: 85 })],
    ['smoke-ctw', smokeCtw, ctwMessage(14), ctwMessage(1)],
  ] as const)('%s: smoke still reported once the test is over is a fire', (_id, model, test, after) => {
    const during = decoded(model, test, ctx('SMK-0001', CLEAR));
    expect(during.events).toEqual(['self_test']);
    expect(decoded(model, after, ctx('SMK-0001', during.state)).events).toEqual(['fire_alarm']);
  });
});

describe('pager-json', () => {
  const WIRE_EVENTS = ['sos', 'service_call', 'family_call', 'fire_call', 'cancel', 'fall', 'heartbeat', 'test'] as const;

  it.each(WIRE_EVENTS)('%s survives encode → decode, and every press is an event', (event) => {
    const sample: EncodeSample = { ts: TS, metrics: { battery_pct: 80 }, events: [event] };
    const first = decoded(pagerJson, pagerJson.encode(sample), ctx('PGR-0001', { battery_low: false }));
    expect(first).toStrictEqual({
      deviceId: 'PGR-0001',
      model: 'pager-json',
      kind: 'pager',
      ts: TS,
      receivedAt: RECEIVED_AT,
      metrics: { battery_pct: 80 },
      state: { battery_low: false },
      events: [event],
    });
    expect(decoded(pagerJson, pagerJson.encode(sample), ctx('PGR-0001', first.state)).events).toEqual([event]);
  });

  it.each(SERVICES)('service_call for %s carries its service both ways', (service) => {
    const reading = decoded(pagerJson, pagerJson.encode({ events: ['service_call'], service }), ctx('PGR-0001'));
    expect(reading.service).toBe(service);
    expect(reading.events).toEqual(['service_call']);
  });

  it('battery events come from the battery flag, after presses and before test/heartbeat', () => {
    const low = decoded(pagerJson, pagerJson.encode({ events: ['battery_low'] }), ctx('PGR-0001', { battery_low: false }));
    expect(low.events).toEqual(['battery_low', 'heartbeat']);
    const ok = decoded(pagerJson, pagerJson.encode({ events: ['fall', 'battery_ok'] }), ctx('PGR-0001', low.state));
    expect(ok.events).toEqual(['fall', 'battery_ok']);
    expect(ok.state).toEqual({ battery_low: false });
  });

  it('service is sent with service_call only, and an unknown one is refused on decode', () => {
    expect(JSON.parse(pagerJson.encode({ events: ['sos'], service: 'meal' }).toString('utf8'))).toEqual({ event: 'sos' });
    const result = pagerJson.decode(pagerJson.encode({ events: ['service_call'], service: 'laundry' }), ctx('PGR-0001'));
    expect(result.ok ? 'ok' : result.error).toMatchObject({ code: 'DEV_ERR_SCHEMA', path: ['service'] });
  });

  it('a reading re-encoded decodes to itself against the same previous state', () => {
    const payloadArb = fc.oneof(
      fc.record({ ts: deviceTsArb, event: fc.constant('service_call'), service: fc.constantFrom(...SERVICES), battery: batteryArb }),
      fc.record({ ts: deviceTsArb, event: fc.constantFrom(...WIRE_EVENTS), battery: batteryArb }),
    );
    fc.assert(
      fc.property(payloadArb, fc.option(fc.record({ battery_low: fc.boolean() }), { nil: undefined }), (payload, previous) => {
        const context = ctx('PGR-0001', previous);
        const reading = decoded(pagerJson, json(payload), context);
        expect(decoded(pagerJson, pagerJson.encode(reading), context)).toStrictEqual(reading);
      }),
    );
  });
});

describe('decode never throws, whatever arrives', () => {
  const KNOWN_CODES = Object.keys(DEVICE_ERRORS);

  /** Mostly a valid field, sometimes anything: so that most payloads get past the schema to the codec's own logic. */
  const anyValue = fc.oneof(
    fc.boolean(),
    fc.integer({ min: -200, max: 200 }),
    fc.double(),
    fc.string(),
    fc.constant(null),
    fc.jsonValue({ maxDepth: 2 }),
  );
  const field = <T>(valid: fc.Arbitrary<T>): fc.Arbitrary<unknown> =>
    fc.oneof({ arbitrary: valid, weight: 5 }, { arbitrary: anyValue, weight: 1 });
  const ts = field(fc.oneof(deviceTsArb, fc.integer({ min: 0, max: 2 ** 45 })));
  const battery = field(batteryArb);
  const rssi = field(fc.integer({ min: -160, max: 0 }));
  const flag = field(fc.boolean());
  const lookalike = fc.oneof(
    fc.record(
      { ts, seq: field(fc.nat()), smoke: flag, battery, rssi, tamper: flag, fault: flag, silenced: flag, test: flag },
      { requiredKeys: ['smoke', 'battery'] },
    ),
    fc.record({
      timestamp: ts,
      payload: field(
        fc.record({
          serviceData: field(
            fc.record(
              { Alarm_Status: field(fc.oneof(fc.constantFrom(1, 2, 4, 5, 7, 10, 11, 12, 14), fc.integer({ min: -5, max: 20 }))), Battery_Level: battery, RSRP: rssi },
              { requiredKeys: ['Alarm_Status', 'Battery_Level'] },
            ),
          ),
        }),
      ),
    }),
    fc.record(
      {
        ts,
        event: field(fc.constantFrom('sos', 'service_call', 'family_call', 'fire_call', 'cancel', 'fall', 'heartbeat', 'test', 'panic')),
        service: field(fc.constantFrom(...SERVICES, 'laundry')),
        battery,
      },
      { requiredKeys: ['event'] },
    ),
  );
  const bytes = fc.oneof(
    fc.uint8Array({ maxLength: 256 }),
    fc.jsonValue().map((v) => json(v)),
    lookalike.map((v) => json(v)),
    // JSON text with numbers JSON.stringify cannot write: overflowing exponents, huge integers.
    fc.tuple(lookalike, fc.constantFrom('1e400', '-1e400', '1e308', '123456789012345678901234567890', '-0')).map(([v, n]) =>
      Buffer.from(JSON.stringify(v).replace(/-?\d+(\.\d+)?(e[+-]?\d+)?/gi, n), 'utf8'),
    ),
  );

  it.each(MODELS.map((m) => [m.id, m] as const))('%s: a canonical reading or a catalogued error', (_id, model) => {
    fc.assert(
      fc.property(bytes, previousArb, fc.integer({ min: 0, max: 2 ** 42 }), (payload, previous, receivedAt) => {
        const result = model.decode(payload, { deviceId: 'DEV-0001', receivedAt, previous });
        if (result.ok) {
          const parsed = ReadingSchema.safeParse({ ...result.value, place: PLACE });
          expect(parsed.success, parsed.success ? '' : parsed.error.message).toBe(true);
          expect(result.value.events.length).toBeGreaterThan(0);
        } else {
          expect(KNOWN_CODES).toContain(result.error.code);
        }
      }),
      { numRuns: 2000 },
    );
  });
});
