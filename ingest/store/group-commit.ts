/**
 * Group commit (DESIGN.md): rows wait up to `maxDelayMs` or until `maxRows` are queued, then go
 * in one transaction, and only then are their promises settled. An urgent row (an alarm) flushes
 * the batch it joins at once. Generic over what a row is, so that it is testable without SQLite.
 */
export interface GroupCommitDeps<T, R> {
  readonly maxDelayMs: number;
  readonly maxRows: number;
  readonly isUrgent: (item: T) => boolean;
  /** One transaction for the batch; one result per item. Throws when the batch did not commit. */
  readonly commit: (items: readonly T[]) => readonly R[];
  /** Turns a commit failure into the error every waiter of the batch is rejected with. */
  readonly toError: (err: unknown, items: readonly T[]) => Error;
  /** False while a caller's own transaction is open: a flush then would nest in it. */
  readonly canFlushNow: () => boolean;
  /** After a commit and after the waiters were resolved. */
  readonly afterCommit?: (items: readonly T[], results: readonly R[]) => void;
}

interface Entry<T, R> {
  readonly item: T;
  readonly resolve: ((result: R) => void) | undefined;
  readonly reject: ((err: Error) => void) | undefined;
}

export interface GroupCommit<T, R> {
  /** Queues an item; the promise settles when its batch has committed (or failed). */
  add(item: T): Promise<R>;
  /** Queues an item nobody waits for (a dead letter): committed with the next batch. */
  addDetached(item: T, onError: (err: Error) => void): void;
  /** Commits whatever is queued, now. */
  flush(): void;
  readonly queued: number;
}

export function createGroupCommit<T, R>(deps: GroupCommitDeps<T, R>): GroupCommit<T, R> {
  let batch: Entry<T, R>[] = [];
  let timer: NodeJS.Timeout | undefined;
  let deferred: NodeJS.Immediate | undefined;

  function push(entry: Entry<T, R>): void {
    batch.push(entry);
    if (deps.isUrgent(entry.item) || batch.length >= deps.maxRows) flush();
    else timer ??= setTimeout(flush, deps.maxDelayMs);
  }

  function flush(): void {
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
    if (deferred !== undefined) clearImmediate(deferred);
    deferred = undefined;
    if (batch.length === 0) return;
    if (!deps.canFlushNow()) {
      // Inside a caller's transaction: committing there would resolve promises for rows the
      // caller might still roll back. Go right after it instead.
      deferred = setImmediate(flush);
      return;
    }
    const entries = batch;
    batch = [];
    const items = entries.map((e) => e.item);
    let results: readonly R[];
    try {
      results = deps.commit(items);
    } catch (err) {
      const error = deps.toError(err, items);
      for (const e of entries) e.reject?.(error);
      return;
    }
    entries.forEach((e, i) => e.resolve?.(results[i] as R));
    deps.afterCommit?.(items, results);
  }

  return {
    add(item) {
      return new Promise<R>((resolve, reject) => push({ item, resolve, reject }));
    },
    addDetached(item, onError) {
      push({ item, resolve: undefined, reject: onError });
    },
    flush,
    get queued() {
      return batch.length;
    },
  };
}
