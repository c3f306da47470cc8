import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { CliIo } from '../../../gateway/cli/command.js';
import { rulesCheck } from '../../../gateway/cli/commands/rules-check.js';
import { dispatch } from '../../../gateway/cli/main.js';

// The command runs in-process through the same dispatcher main.ts uses (the command list is
// passed in: registering it in commands/index.ts is the composition root's job).

let dir: string;
let out: string;
let err: string;

function cli(...argv: string[]): Promise<number> {
  out = '';
  err = '';
  const io: CliIo = {
    stdout: (t) => void (out += t),
    stderr: (t) => void (err += t),
    cwd: dir,
    models: () => Promise.reject(new Error('rules check needs no model lookup')),
  };
  return dispatch(argv, io, [rulesCheck]);
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'gridedge-rules-check-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const GOOD = `rules:
  - id: local.leakage.low
    type: electrical.leakage
    severity: major
    scope: device
    match: { kind: electrical }
    when: { metric: residual_ma, op: '>=', value: 150, for: 5s }
    clear: { metric: residual_ma, op: '<', value: 100, for: 30s }
  - id: service_call
    override: true
    type: service_call
    severity: minor
    scope: device
    match: { kind: pager }
    when: { event: service_call }
`;

const BAD = `rules:
  - id: electrical.leakage2
    type: electrical.leakage
    severity: major
    scope: device
    when: { metric: residual_ma, op: '=>', value: 300 }
  - id: smoke.typo
    type: fire
    severity: critical
    scope: device
    when: { event: fire_alrm }
`;

describe('gridedge rules check', () => {
  it('a good file: exit 0 and a summary', async () => {
    await writeFile(join(dir, 'local.yaml'), GOOD);
    expect(await cli('rules', 'check', 'local.yaml')).toBe(0);
    expect(err).toBe('');
    expect(out).toBe('local.yaml: 2 rules (1 override)\nok: 2 rules in 1 file\n');
  });

  it('builtin alone, and builtin before a local file', async () => {
    expect(await cli('rules', 'check', 'builtin')).toBe(0);
    expect(out).toMatch(/^builtin: \d+ rules\nok: \d+ rules in 1 file\n$/);
    await writeFile(join(dir, 'local.yaml'), GOOD);
    expect(await cli('rules', 'check', 'builtin', 'local.yaml')).toBe(0);
    expect(out).toContain('local.yaml: 2 rules (1 override)\n');
    expect(out).toMatch(/ok: \d+ rules in 2 files\n$/);
  });

  it('a bad file: exit 2, each error naming the file, the rule id and the field path', async () => {
    await writeFile(join(dir, 'local.yaml'), BAD);
    expect(await cli('rules', 'check', 'local.yaml')).toBe(2);
    expect(out).toBe('');
    const lines = err.trimEnd().split('\n');
    expect(lines[0]).toBe('local.yaml: rule electrical.leakage2: when.op: must be one of > >= < <= == != (line 6)');
    expect(lines[1]).toMatch(/^local\.yaml: rule smoke\.typo: when\.event: unknown event "fire_alrm"/);
    expect(lines[2]).toBe('2 errors in 1 file');
  });

  it('checks every file named and reports each bad one; the good ones do not hide them', async () => {
    await writeFile(join(dir, 'good.yaml'), GOOD);
    await writeFile(join(dir, 'bad.yaml'), BAD);
    expect(await cli('rules', 'check', 'good.yaml', 'bad.yaml')).toBe(2);
    expect(err).toContain('bad.yaml: rule electrical.leakage2: when.op:');
    expect(err).not.toContain('good.yaml');
  });

  it('an id that clashes with builtin needs override: true', async () => {
    await writeFile(join(dir, 'local.yaml'), GOOD.replace('    override: true\n', ''));
    expect(await cli('rules', 'check', 'local.yaml')).toBe(2);
    expect(err).toContain('local.yaml: rule service_call: id: duplicate rule id: builtin already has a rule service_call; to replace it, add override: true');
  });

  it('a missing file and invalid YAML are errors too', async () => {
    await writeFile(join(dir, 'broken.yaml'), 'rules:\n  - id: x\n    when: { metric: a, op: >= }\n');
    expect(await cli('rules', 'check', 'nope.yaml', 'broken.yaml')).toBe(2);
    expect(err).toContain('nope.yaml: cannot read: no such file');
    expect(err).toMatch(/broken\.yaml: not valid YAML: .*quoted in YAML: op: '>=' \(line 3\)/);
  });

  it('no file: usage error, exit 2', async () => {
    expect(await cli('rules', 'check')).toBe(2);
    expect(err).toContain('usage: gridedge rules check');
  });
});
