import { describe, expect, it } from 'vitest';
import { createGroupCommit } from '../../../ingest/store/group-commit.js';
import { sleep, track } from './store-helpers.js';

function harness(opts: { maxDelayMs?: number; maxRows?: number; fail?: (items: readonly string[]) => boolean; inTx?: () => boolean } = {}) {
  const batches: string[][] = [];
  let next = 1;
  const gc = createGroupCommit<string, number>({
    maxDelayMs: opts.maxDelayMs ?? 10,
    maxRows: opts.maxRows ?? 100,
    isUrgent: (item) => item.startsWith('ALARM'),
    commit: (items) => {
      if (opts.fail?.(items)) throw Object.assign(new Error('disk I/O error'), { code: 'SQLITE_IOERR' });
      batches.push([...items]);
      return items.map(() => next++);
    },
    toError: (err) => new Error(`write failed: ${(err as Error).message}`),
    canFlushNow: () => !(opts.inTx?.() ?? false),
  });
  return { gc, batches };
}

describe('group commit (without SQLite)', () => {
  it('collects a window into one commit and resolves in order', async () => {
    const { gc, batches } = harness();
    const results = await Promise.all(['a', 'b', 'c'].map((x) => gc.add(x)));
    expect(results).toEqual([1, 2, 3]);
    expect(batches).toEqual([['a', 'b', 'c']]);
  });

  it('an urgent item commits its batch synchronously', () => {
    const { gc, batches } = harness({ maxDelayMs: 60_000 });
    void gc.add('a');
    void gc.add('ALARM sos');
    expect(batches).toEqual([['a', 'ALARM sos']]);
    expect(gc.queued).toBe(0);
  });

  it('a failed commit rejects every waiter of that batch and only those', async () => {
    const { gc } = harness({ maxRows: 2, fail: (items) => items.includes('bad') });
    const first = gc.add('bad');
    const second = gc.add('ok-in-same-batch');
    const third = gc.add('later');
    await expect(first).rejects.toThrow('write failed: disk I/O error');
    await expect(second).rejects.toThrow('write failed');
    await expect(third).resolves.toBe(1);
  });

  it('a detached item reports its failure to its own handler', async () => {
    const errors: string[] = [];
    const { gc } = harness({ fail: () => true });
    gc.addDetached('dead letter', (err) => errors.push(err.message));
    gc.flush();
    await sleep(0);
    expect(errors).toEqual(['write failed: disk I/O error']);
  });

  it('defers a flush that would nest inside a caller transaction', async () => {
    let inTx = true;
    const { gc, batches } = harness({ inTx: () => inTx });
    const p = track(gc.add('ALARM fall'));
    expect(batches).toEqual([]);
    inTx = false;
    await sleep(5);
    expect(p.settled).toBe(true);
    expect(batches).toEqual([['ALARM fall']]);
  });
});
