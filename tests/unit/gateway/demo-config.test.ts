import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { demoConfigText, exampleDir } from '../../../gateway/cli/commands/demo.js';

// `npm start` runs the demo on its default ports (1883, 8080): the edit of the example config must
// work when a value is replaced by itself. It threw "the example config has changed" before.
describe('the demo config', () => {
  const source = readFileSync(join(exampleDir(), 'gridedge.yaml'), 'utf8');

  it('takes the default ports', () => {
    const text = demoConfigText(source, { dataDir: '/tmp/d', port: 1883, httpPort: 8080 });
    expect(text).toContain('listen: { host: 127.0.0.1, port: 1883 }');
    expect(text).toContain('http: { host: 127.0.0.1, port: 8080 }');
  });

  it('takes other ports and the data directory', () => {
    const text = demoConfigText(source, { dataDir: '/tmp/d', port: 0, httpPort: 0 });
    expect(text).toContain('listen: { host: 127.0.0.1, port: 0 }');
    expect(text).toContain('http: { host: 127.0.0.1, port: 0 }');
    expect(text).toContain('dataDir: "/tmp/d"');
  });

  it('says so when the example no longer has what it edits', () => {
    expect(() => demoConfigText(source.replace(/^http:.*$/m, ''), { dataDir: '/tmp/d', port: 0, httpPort: 0 })).toThrow(/example config has changed/);
  });
});
