import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CliIo } from '../../../gateway/cli/command.js';
import { createSimulateCommand, parseMix } from '../../../gateway/cli/commands/simulate.js';
import { dispatch } from '../../../gateway/cli/main.js';

let dir: string;
const SITE = `id,model,grid,building,room,secret,bus,address,rf,heartbeat,resident_name,resident_phone
SMK-1,smoke-json,110101013001002,7,B1-3,,,,,,,
ELC-1,elec-ers1,110101013001002,7,B1-3,,rs485-1,1,,,,
`;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'gridedge-simulate-'));
  await writeFile(join(dir, 'devices.csv'), SITE);
  await writeFile(join(dir, 'bad.yaml'), 'steps:\n  - { at: 5s, device: SMK-1, send: { events: [sos] } }\n  - { at: 6s, rf: { bus: rf-1, id: 5A3C1, key: help } }\n');
});
afterAll(() => rm(dir, { recursive: true, force: true }));

async function cli(argv: string[]) {
  let out = '';
  let err = '';
  const io: CliIo = { stdout: (t) => void (out += t), stderr: (t) => void (err += t), cwd: dir, models: () => Promise.reject(new Error('not needed')) };
  const code = await dispatch(['simulate', ...argv], io, [createSimulateCommand({ isTTY: () => false, signal: new AbortController().signal })]);
  return { code, out, err };
}

describe('gridedge simulate: bad usage is exit 2 with a message', () => {
  it.each([
    [['--site', '.', '--qos', '2', '--rate', '10'], /--qos is 0 or 1/],
    [['--site', '.', '-c', 'gridedge.yaml'], /--site or -c, not both/],
    [['--site', '.', '--scenario', 'x.yaml', '--rate', '10'], /two different runs/],
    [['--site', '.', '--url', 'http://127.0.0.1'], /--url must be mqtt:/],
    [['--site', '.', '--devices', '0'], /--devices needs a whole number/],
    [['--site', '.', '--rate', 'fast'], /--rate needs a number/],
    [['--site', '.', '--rate', '10', '--duration', '10'], /--duration needs a duration/],
    [['--site', '.', '--rate', '10', '--mix', 'elec-ers1=1'], /not an MQTT model/],
    [['--site', '.', '--qos', '0'], /--qos goes with --rate/],
    [['--site', '.', '--devices', '5', '--rate', '10'], /only 1 MQTT devices/],
    [['--site', '.', '--bogus'], /Unknown option/],
  ])('%j', async (argv, message) => {
    const r = await cli(argv);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(message);
    expect(r.err).toContain('usage: gridedge simulate');
  });

  it('a site that does not exist', async () => {
    const r = await cli(['--site', 'nowhere', '--rate', '10']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/nowhere: no such file/);
  });

  it('a scenario with bad fields names each one, with its line', async () => {
    const r = await cli(['--site', '.', '--scenario', 'bad.yaml']);
    expect(r.code).toBe(2);
    expect(r.err).toContain('bad.yaml:3: steps[1].rf.key: key is one of sos');
    expect(r.out).toBe('');
  });

  it('a scenario that does not fit the site', async () => {
    await writeFile(join(dir, 'other.yaml'), 'steps:\n  - { at: 5s, device: SMK-1, send: { events: [sos] } }\n  - { at: 6s, meter: { bus: rs485-1, address: 9 }, sample: { metrics: { t1_c: 20 } } }\n');
    const r = await cli(['--site', '.', '--scenario', 'other.yaml']);
    expect(r.code).toBe(2);
    expect(r.err).toContain('other.yaml: steps[0].send.events[0]: sos is not an event this model sends (smoke-json)');
    expect(r.err).toContain('other.yaml: steps[1].meter: no meter at address 9 on bus rs485-1 in the site');
  });

  it('parses --mix', () => {
    expect(parseMix('smoke-json=0.6, pager-json=0.4')).toEqual({ 'smoke-json': 0.6, 'pager-json': 0.4 });
    expect(() => parseMix('smoke-json')).toThrow(/model=share/);
    expect(() => parseMix('smoke-json=0')).toThrow(/add up to 0/);
  });
});
