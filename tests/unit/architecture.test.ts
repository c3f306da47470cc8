import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

// STYLE.md: devices/ is the leaf; ingest/ and rules/ take callbacks and never import gateway/;
// simulators/ build on devices/ only; gateway/ is the composition root and may import anything.
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const ALLOWED: Record<string, readonly string[]> = {
  devices: ['devices'],
  ingest: ['ingest', 'devices'],
  rules: ['rules', 'devices'],
  simulators: ['simulators', 'devices'],
  gateway: ['gateway', 'ingest', 'rules', 'devices', 'simulators'],
};

function sourceFiles(dir: string): string[] {
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return [];
  }
  return entries.flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return name === 'fixtures' ? [] : sourceFiles(path);
    return name.endsWith('.ts') ? [path] : [];
  });
}

function relativeImports(source: string): string[] {
  const specs: string[] = [];
  const re = /(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g;
  for (const m of source.matchAll(re)) {
    const spec = m[1] ?? m[2];
    if (spec?.startsWith('.')) specs.push(spec);
  }
  return specs;
}

describe('import directions', () => {
  const violations: string[] = [];
  let scanned = 0;
  for (const [folder, allowed] of Object.entries(ALLOWED)) {
    for (const file of sourceFiles(join(ROOT, folder))) {
      scanned++;
      for (const spec of relativeImports(readFileSync(file, 'utf8'))) {
        const target = relative(ROOT, resolve(dirname(file), spec)).split(sep)[0] ?? '';
        if (!allowed.includes(target)) violations.push(`${relative(ROOT, file)} imports ${spec} (${folder}/ may import ${allowed.join(', ')})`);
      }
    }
  }

  it('scans the source tree', () => {
    expect(scanned).toBeGreaterThan(10);
  });

  it('every import goes down the layers', () => {
    expect(violations).toEqual([]);
  });

  it('the checker itself catches an upward import', () => {
    expect(relativeImports("import { x } from '../gateway/cli/main.js';")).toEqual(['../gateway/cli/main.js']);
    expect(relativeImports("const m = await import('./a.js');")).toEqual(['./a.js']);
    expect(relativeImports("import type { Y } from 'zod';")).toEqual([]);
  });
});
