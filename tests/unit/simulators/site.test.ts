import { describe, expect, it } from 'vitest';
import { model as pagerJson } from '../../../devices/models/pager-json/index.js';
import { model as smokeCtw } from '../../../devices/models/smoke-ctw/index.js';
import { model as smokeJson } from '../../../devices/models/smoke-json/index.js';
import { selectByMix } from '../../../simulators/load.js';
import { demoSecret, parseSiteCsv, simulatedMqttDevices, siteIndex, SiteError } from '../../../simulators/site.js';

const CSV = `id,model,grid,building,room,secret,bus,address,rf,heartbeat,resident_name,resident_phone
ELC-0701-B13,elec-ers1,110101013001002,7,B1-3,,rs485-1,1,,,,
SMK-0701-B13,smoke-json,110101013001002,7,B1-3,scrypt$16384$8$1$abc$def,,,,,,
CTW-0001,smoke-ctw,110101013001002,7,"地下一层,3号",plain-pass,,,,4h,,
RFP-0501-302,pager-rf,110101013001002,5,302,,rf-1,,5a3c1,,王桂兰,138-0000-0001
`;

describe('site devices', () => {
  it('reads the registry CSV minimally (quoted cells, rf ids upper-cased)', () => {
    const devices = parseSiteCsv(CSV);
    expect(devices.map((d) => d.id)).toEqual(['ELC-0701-B13', 'SMK-0701-B13', 'CTW-0001', 'RFP-0501-302']);
    expect(devices[2]).toMatchObject({ room: '地下一层,3号', plainSecret: 'plain-pass', line: 4 });
    expect(devices[1]?.plainSecret).toBeUndefined();
    const index = siteIndex(devices);
    expect(index.meter('rs485-1', 1)?.id).toBe('ELC-0701-B13');
    expect(index.rf('rf-1', '5A3C1')?.id).toBe('RFP-0501-302');
  });

  it('passwords: the plain secret of the row, else the demo rule', () => {
    const mqtt = simulatedMqttDevices(parseSiteCsv(CSV));
    expect(mqtt.map((d) => [d.id, d.model.id, d.secret])).toEqual([
      ['SMK-0701-B13', 'smoke-json', 'dhs-demo-SMK-0701-B13'],
      ['CTW-0001', 'smoke-ctw', 'plain-pass'],
    ]);
    expect(demoSecret('PGR-0501-302')).toBe('dhs-demo-PGR-0501-302');
  });

  it('refuses a file it cannot use, with the line', () => {
    expect(() => parseSiteCsv('name,model\nx,smoke-json\n', 'a.csv')).toThrow(SiteError);
    expect(() => parseSiteCsv('id,model\n,smoke-json\n', 'a.csv')).toThrow(/a.csv: line 2: id is empty/);
    expect(() => parseSiteCsv('', 'a.csv')).toThrow(/header/);
  });
});

describe('selectByMix', () => {
  const pool = [
    ...Array.from({ length: 10 }, (_, i) => ({ id: `S${i}`, model: smokeJson })),
    ...Array.from({ length: 10 }, (_, i) => ({ id: `C${i}`, model: smokeCtw })),
    ...Array.from({ length: 2 }, (_, i) => ({ id: `P${i}`, model: pagerJson })),
  ];
  const count = (list: { model: { id: string } }[]) => list.reduce<Record<string, number>>((acc, d) => ({ ...acc, [d.model.id]: (acc[d.model.id] ?? 0) + 1 }), {});

  it('takes the first N without a mix', () => {
    expect(selectByMix(pool, 3).map((d) => d.id)).toEqual(['S0', 'S1', 'S2']);
  });

  it('follows the shares, by largest remainder', () => {
    expect(count(selectByMix(pool, 10, { 'smoke-json': 0.5, 'smoke-ctw': 0.3, 'pager-json': 0.2 }))).toEqual({ 'smoke-json': 5, 'smoke-ctw': 3, 'pager-json': 2 });
    expect(count(selectByMix(pool, 7, { 'smoke-json': 1, 'smoke-ctw': 1 }))).toEqual({ 'smoke-json': 4, 'smoke-ctw': 3 });
  });

  it('gives a short model\'s share to the others and never exceeds the pool', () => {
    const picked = selectByMix(pool, 10, { 'pager-json': 1 });
    expect(picked).toHaveLength(10);
    expect(count(picked)['pager-json']).toBe(2);
    expect(new Set(picked).size).toBe(10);
    expect(selectByMix(pool, 100)).toHaveLength(22);
  });
});
