import { afterAll } from 'vitest';

/**
 * One registry of things the harness must undo (child processes, temp dirs), so that a test that
 * fails before its own `stop()` leaks nothing:
 * - after the test file: an `afterAll` hook registered when this module is first imported by a
 *   test file (module top level runs during collection);
 * - when the worker process exits or is signalled: a synchronous last resort (`syncFallback`)
 *   for each entry, e.g. SIGKILL to the PID the harness started.
 * Entries run newest first, like a stack: a process is stopped before its temp dir is removed.
 */
interface Entry {
  readonly name: string;
  readonly run: () => Promise<void>;
  readonly syncFallback?: () => void;
}

const entries: Entry[] = [];

export interface CleanupHandle {
  /** Forget the entry (the owner undid it itself). */
  unregister(): void;
}

export function registerCleanup(name: string, run: () => Promise<void>, syncFallback?: () => void): CleanupHandle {
  installProcessHooks();
  const entry: Entry = syncFallback ? { name, run, syncFallback } : { name, run };
  entries.push(entry);
  return {
    unregister() {
      const i = entries.indexOf(entry);
      if (i >= 0) entries.splice(i, 1);
    },
  };
}

/** Runs every registered cleanup, newest first; one failure does not stop the others. */
export async function cleanupAll(): Promise<void> {
  const errors: unknown[] = [];
  while (entries.length > 0) {
    const entry = entries.pop() as Entry;
    try {
      await entry.run();
    } catch (err) {
      errors.push(new Error(`cleanup of ${entry.name} failed`, { cause: err }));
    }
  }
  if (errors.length === 1) throw errors[0];
  if (errors.length > 1) throw new AggregateError(errors, 'several harness cleanups failed');
}

let hooksInstalled = false;
function installProcessHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  const runSync = (): void => {
    for (const entry of entries.splice(0).reverse()) {
      try {
        entry.syncFallback?.();
      } catch {
        // Exiting anyway: nothing useful to do with the error.
      }
    }
  };
  process.once('exit', runSync);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      runSync();
      // Re-raise with the default disposition so that the exit status tells the truth.
      process.kill(process.pid, signal);
    });
  }
}

afterAll(cleanupAll);
