import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RESERVE_FILE, createDiskGuard, lowWaterBytes, type DiskGuardDeps } from '../../../gateway/disk-guard.js';

/**
 * The disk guard's mode switching (SPEC-NOTES "Disk full"), with a real reserve file in a temp
 * dir and an injected statfs: the free space is what the test says, minus the reserve file the
 * guard really wrote, so creating and releasing it moves the figure as on a real disk.
 */

const MiB = 1024 * 1024;
const RESERVE = 4 * MiB;
const LOW = lowWaterBytes(RESERVE); // 1 MiB
const RESUME = RESERVE + 2 * LOW;

let dir: string;
let outside: number; // free space, not counting the reserve file
let now: number;
let modes: boolean[];
let logs: { level: string; msg: string | undefined; obj: object }[];

const reservePath = () => join(dir, RESERVE_FILE);
const reserveOnDisk = () => (existsSync(reservePath()) ? statSync(reservePath()).size : 0);

function guard(over: Partial<DiskGuardDeps> = {}) {
  return createDiskGuard({
    dir,
    reserveBytes: RESERVE,
    onChange: (full) => modes.push(full),
    logger: {
      info: (obj, msg) => logs.push({ level: 'info', obj, msg }),
      warn: (obj, msg) => logs.push({ level: 'warn', obj, msg }),
      error: (obj, msg) => logs.push({ level: 'error', obj, msg }),
    },
    clock: () => now,
    pollMs: 3_600_000, // the tests call check() themselves
    statfs: () => ({ free: Math.max(0, outside - reserveOnDisk()), total: 64 * MiB }),
    ...over,
  });
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'gridedge-disk-guard-'));
  outside = 40 * MiB;
  now = 1_733_300_000_000;
  modes = [];
  logs = [];
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('disk guard', () => {
  it('creates the reserve at start when there is room, and reports ok', () => {
    const g = guard();
    g.start();
    g.stop();
    expect(reserveOnDisk()).toBe(RESERVE);
    expect(existsSync(`${reservePath()}.tmp`)).toBe(false);
    expect(g.health()).toMatchObject({ state: 'ok', reserve: 'present', reserveBytes: RESERVE, lowWaterBytes: LOW, free: 40 * MiB - RESERVE, episodes: 0 });
    expect(modes).toEqual([]);
  });

  it('keeps a reserve of the right size from the last run and replaces one of another size', () => {
    writeFileSync(reservePath(), Buffer.alloc(RESERVE, 7));
    const g = guard();
    g.start();
    expect(statSync(reservePath()).size).toBe(RESERVE);
    expect(g.health().reserve).toBe('present');
    g.stop();

    writeFileSync(reservePath(), Buffer.alloc(MiB));
    const h = guard();
    h.start();
    h.stop();
    expect(reserveOnDisk()).toBe(RESERVE);
  });

  it('enters disk-full mode below the low-water mark: releases the reserve, tells once, logs once', () => {
    const g = guard();
    g.start();
    outside = RESERVE + LOW - 1; // the disk filled up to just under the mark
    g.check();
    expect(g.health()).toMatchObject({ state: 'full', reason: 'low_space', reserve: 'released', since: now, episodes: 1 });
    expect(reserveOnDisk()).toBe(0);
    expect(g.health().free).toBeLessThan(LOW);
    // The next checks see the released reserve as free space, still short of the resume mark.
    g.check();
    g.check();
    expect(modes).toEqual([true]);
    expect(logs.filter((l) => l.level === 'error')).toHaveLength(1);
    expect(logs.find((l) => l.level === 'error')?.msg).toMatch(/disk full/);
  });

  it('stays in the mode until the reserve fits with a margin (hysteresis), then recovers by itself', () => {
    const g = guard();
    g.start();
    outside = RESERVE + LOW - 1;
    g.check();
    // The reserve is back as free space, and more, but not the reserve plus twice the mark.
    outside = RESUME - 1;
    g.check();
    expect(g.health().state).toBe('full');
    expect(reserveOnDisk()).toBe(0);

    outside = RESUME;
    now += 30_000;
    g.check();
    expect(g.health()).toMatchObject({ state: 'ok', reserve: 'present', reason: undefined, since: undefined });
    expect(reserveOnDisk()).toBe(RESERVE);
    expect(modes).toEqual([true, false]);
    expect(logs.find((l) => /recovered/.test(l.msg ?? ''))?.obj).toMatchObject({ fullForMs: 30_000 });
  });

  it('reportFull: a write that failed on a full disk releases the reserve once and says so', () => {
    const g = guard();
    g.start();
    outside = RESERVE + LOW / 2; // under the mark, but no check has run yet
    expect(g.reportFull()).toBe(true); // released now: the commit may retry
    expect(g.health()).toMatchObject({ state: 'full', reason: 'write_failed', reserve: 'released' });
    expect(reserveOnDisk()).toBe(0);
    expect(g.reportFull()).toBe(false); // nothing more to give
    expect(modes).toEqual([true]);
  });

  it('reportFull with plenty of free space is the database cap, not the disk: the mode stays ok', () => {
    const g = guard();
    g.start();
    expect(g.reportFull()).toBe(false);
    expect(g.health()).toMatchObject({ state: 'ok', reserve: 'present' });
    expect(modes).toEqual([]);
  });

  it('starts on a disk too full for the reserve: no reserve, and disk-full mode when under the mark', () => {
    outside = RESERVE + LOW; // above the mark but the reserve plus the margin does not fit
    const g = guard();
    g.start();
    expect(g.health()).toMatchObject({ state: 'ok', reserve: 'absent' });
    expect(reserveOnDisk()).toBe(0);
    // Room again: the next check creates it.
    outside = RESUME;
    g.check();
    expect(g.health().reserve).toBe('present');

    outside = LOW - 1;
    rmSync(reservePath());
    const h = guard();
    h.start();
    expect(h.health()).toMatchObject({ state: 'full', reason: 'low_space', reserve: 'absent' });
    expect(modes).toEqual([true]);
  });

  it('reserveBytes 0: no file, the mode still switches on the low-water mark', () => {
    const g = guard({ reserveBytes: 0 });
    g.start();
    expect(reserveOnDisk()).toBe(0);
    expect(g.health()).toMatchObject({ state: 'ok', reserve: 'absent', lowWaterBytes: MiB });
    outside = MiB - 1;
    g.check();
    expect(g.health().state).toBe('full');
    outside = 2 * MiB;
    g.check();
    expect(g.health().state).toBe('ok');
    expect(modes).toEqual([true, false]);
  });

  it('logs entering the mode at most once a minute however often it flaps', () => {
    const g = guard();
    g.start();
    for (let i = 0; i < 5; i++) {
      outside = LOW - 1;
      g.check();
      outside = 40 * MiB;
      g.check();
      now += 5_000;
    }
    expect(g.health().episodes).toBe(5);
    expect(modes).toEqual([true, false, true, false, true, false, true, false, true, false]);
    expect(logs.filter((l) => l.level === 'error')).toHaveLength(1);
    now += 60_000;
    outside = LOW - 1;
    g.check();
    const errors = logs.filter((l) => l.level === 'error');
    expect(errors).toHaveLength(2);
    expect(errors[1]?.obj).toMatchObject({ episodes: 5 }); // four unlogged before this one
  });

  it('a statfs that fails changes nothing and is logged, throttled', () => {
    let fail = false;
    const g = guard({ statfs: () => {
      if (fail) throw Object.assign(new Error('EIO'), { code: 'EIO' });
      return { free: outside - reserveOnDisk(), total: 64 * MiB };
    } });
    g.start();
    fail = true;
    g.check();
    g.check();
    expect(g.health().state).toBe('ok');
    expect(logs.filter((l) => /free space/.test(l.msg ?? ''))).toHaveLength(1);
  });

  it('a mode listener that throws is logged and the mode still changes', () => {
    const g = guard({ onChange: () => { throw new Error('boom'); } });
    g.start();
    outside = LOW - 1;
    g.check();
    expect(g.health().state).toBe('full');
    expect(logs.some((l) => /listener threw/.test(l.msg ?? ''))).toBe(true);
  });
});
