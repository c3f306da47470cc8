import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import type { Reading } from '../../devices/reading.js';
import { openStore } from '../../ingest/store/index.js';

// SPEC §3: a reading is acknowledged only once it is durably stored. A child process appends as
// fast as it can and prints what the store acknowledged; we kill -9 it at a random moment (often
// mid-transaction) and check that the ledger of acknowledgements is a subset of the database.
// (kill -9 keeps the OS page cache; power loss is what synchronous=FULL is for, not testable here.)
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const CHILD = join(ROOT, 'tests/integration/fixtures/store-crash-child.mjs');
const BUILT = join(ROOT, 'dist/ingest/store/index.js');
const BASE_TS = 1_733_300_000_000;
const silent = { info() {}, warn() {}, error() {} };

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function assertBuildIsFresh(): void {
  if (!existsSync(BUILT)) throw new Error(`${BUILT} is missing: run \`npm run build\` before this test`);
  const built = statSync(join(ROOT, 'dist/ingest/store/open-store.js')).mtimeMs;
  const src = join(ROOT, 'ingest/store');
  for (const f of readdirSync(src)) {
    if (f.endsWith('.ts') && statSync(join(src, f)).mtimeMs > built) {
      throw new Error(`dist/ is older than ingest/store/${f}: run \`npm run build\` before this test`);
    }
  }
}

interface Ledger {
  lines: { seq: number; n: number }[];
  stderr: string;
  killedAfterMs: number;
}

function runAndKill(path: string, killAfterMs: number): Promise<Ledger> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [CHILD, path], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timer: NodeJS.Timeout | undefined;
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      stdout += chunk;
      // Start the countdown at the first acknowledgement, so that the kill lands while writing.
      if (timer === undefined && /^\d+ \d+$/m.test(stdout)) timer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
    });
    child.stderr.on('data', (chunk: string) => {
      stderr += chunk;
    });
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (timer !== undefined) clearTimeout(timer);
      if (signal !== 'SIGKILL') {
        reject(new Error(`child exited by itself (code ${code}, signal ${signal}): ${stderr}`));
        return;
      }
      // Only complete lines count: a line cut by the kill was not fully reported.
      const complete = stdout.slice(0, stdout.lastIndexOf('\n') + 1);
      const lines = complete
        .split('\n')
        .filter((l) => /^\d+ \d+$/.test(l))
        .map((l) => {
          const [seq, n] = l.split(' ').map(Number);
          return { seq: seq ?? -1, n: n ?? -1 };
        });
      resolvePromise({ lines, stderr, killedAfterMs: killAfterMs });
    });
    // A hung child must not hang the suite.
    setTimeout(() => child.kill('SIGKILL'), 20_000).unref();
  });
}

describe('store crash safety (kill -9)', () => {
  for (const round of [1, 2, 3]) {
    it(`round ${round}: every acknowledged reading is in the store after kill -9`, async () => {
      assertBuildIsFresh();
      const dir = mkdtempSync(join(tmpdir(), 'gridedge-crash-'));
      dirs.push(dir);
      const path = join(dir, 'store.db');
      const killAfterMs = 150 + Math.floor(Math.random() * 600);
      const ledger = await runAndKill(path, killAfterMs);
      const context = `kill after ${killAfterMs} ms, ${ledger.lines.length} acknowledged; child stderr: ${ledger.stderr}`;
      expect(ledger.lines.length, context).toBeGreaterThan(500);

      // WAL recovery runs on open; the file must be sound.
      const raw = new Database(path);
      expect(raw.pragma('integrity_check', { simple: true }), context).toBe('ok');
      raw.close();

      const store = openStore({ path, clock: Date.now, logger: silent });
      try {
        const bySeq = new Map<number, Reading>();
        let after = 0;
        for (;;) {
          const page = store.readAfter('influxdb1:crash', 50_000, after);
          if (page.length === 0) break;
          for (const r of page) bySeq.set(r.seq, r.reading);
          after = page.at(-1)?.seq ?? after;
        }
        const missing = ledger.lines.filter(({ seq, n }) => bySeq.get(seq)?.ts !== BASE_TS + n);
        expect(missing.slice(0, 5), context).toEqual([]);
        // The store's own accounting agrees with what is on disk after the crash.
        expect(store.stats().rows).toBe(bySeq.size);
        expect(Math.max(...ledger.lines.map((l) => l.seq))).toBeLessThanOrEqual(store.stats().lastSeq);
        // And it takes writes again after the last seq it ever handed out.
        const before = store.stats().lastSeq;
        const sample = bySeq.values().next().value as Reading;
        expect(await store.append({ ...sample, ts: BASE_TS })).toBe(before + 1);
      } finally {
        await store.close();
      }
    });
  }
});
