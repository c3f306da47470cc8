import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { demoConfigText, exampleDir } from '../../../gateway/cli/commands/demo.js';

/** The parts of a gridedge.yaml these tests read. */
interface DemoConfig {
  gateway: { id: string; dataDir: string };
  mqtt: { listen: { host: string; port: number } };
  http: { host: string; port: number };
  serial: { id: string; path: string }[];
  devices: string;
}
const parse = (text: string): DemoConfig => parseYaml(text) as DemoConfig;

// `npm start` runs the demo on its default ports (1883, 8080): the edit of the example config must
// work when a value is replaced by itself. It threw "the example config has changed" before.
describe('the demo config', () => {
  const source = readFileSync(join(exampleDir(), 'gridedge.yaml'), 'utf8');

  it('takes the default ports', () => {
    const cfg = parse(demoConfigText(source, { dataDir: '/tmp/d', port: 1883, httpPort: 8080 }));
    expect(cfg.mqtt.listen).toEqual({ host: '127.0.0.1', port: 1883 });
    expect(cfg.http).toMatchObject({ host: '127.0.0.1', port: 8080 });
  });

  it('takes other ports and the data directory', () => {
    const text = demoConfigText(source, { dataDir: '/tmp/d', port: 0, httpPort: 0 });
    const cfg = parse(text);
    expect(cfg.mqtt.listen).toEqual({ host: '127.0.0.1', port: 0 });
    expect(cfg.http).toMatchObject({ host: '127.0.0.1', port: 0 });
    expect(cfg.gateway).toEqual({ id: 'gw-dhs-07', dataDir: '/tmp/d' });
    // A document edit, not a rewrite: the example's comments are still there.
    expect(text).toContain('# 东城区');
  });

  it('points each serial bus at its pty, or drops the buses without socat', () => {
    const serial = new Map([['rs485-1', '/tmp/w/rs485-1-gateway'], ['rf-1', '/tmp/w/rf-1-gateway']]);
    const cfg = parse(demoConfigText(source, { dataDir: '/tmp/d', port: 0, serial, devicesFile: '/tmp/w/devices.csv' }));
    expect(cfg.serial.map((b) => [b.id, b.path])).toEqual([
      ['rs485-1', '/tmp/w/rs485-1-gateway'],
      ['rs485-2', '/dev/ttyUSB2'],
      ['rf-1', '/tmp/w/rf-1-gateway'],
    ]);
    expect(cfg.devices).toBe('/tmp/w/devices.csv');
    expect(parse(demoConfigText(source, { dataDir: '/tmp/d', port: 0 })).serial).toEqual([]);
    expect(() => demoConfigText(source, { dataDir: '/tmp/d', port: 0, serial: new Map([['rs485-9', '/x']]) })).toThrow(/no serial bus rs485-9/);
  });

  it('says so when the example no longer has what it edits', () => {
    expect(() => demoConfigText(source.replace(/^http:.*$/m, ''), { dataDir: '/tmp/d', port: 0, httpPort: 0 })).toThrow(/example config has changed: it has no http.host/);
  });
});
