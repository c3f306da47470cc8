import { rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { registerCleanup } from './cleanup.js';

export interface TempDir {
  readonly path: string;
  /** Removes the directory and everything in it. Idempotent. */
  cleanup(): Promise<void>;
}

/**
 * A fresh directory under the OS temp dir, removed by `cleanup()` or, at the latest, after the test
 * file. Set GRIDEDGE_KEEP_TMP=1 to keep it for a post-mortem.
 */
export async function makeTempDir(prefix = 'gridedge-'): Promise<TempDir> {
  const path = await mkdtemp(join(tmpdir(), prefix.replace(/[/\\]/g, '-')));
  let removed = false;
  const remove = async (): Promise<void> => {
    if (removed || process.env.GRIDEDGE_KEEP_TMP === '1') return;
    removed = true;
    handle.unregister();
    await rm(path, { recursive: true, force: true, maxRetries: 3 });
  };
  const handle = registerCleanup(`temp dir ${path}`, remove, () => {
    if (process.env.GRIDEDGE_KEEP_TMP !== '1') rmSync(path, { recursive: true, force: true });
  });
  return { path, cleanup: remove };
}
