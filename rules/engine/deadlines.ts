/**
 * Keyed deadlines in a binary min-heap, so that a tick costs only the deadlines that are due,
 * not one check per device (10,000 offline timers cost nothing until one expires).
 *
 * Moving a deadline later is O(1): the heap entry stays where it is and is re-queued at the new
 * time when it comes up (a device that reports every minute moves its offline deadline every
 * minute; the heap is touched about once per offline period). Moving it earlier pushes a new
 * entry and the old one is skipped when it surfaces. Cancelling forgets the key.
 */
interface Entry {
  readonly at: number;
  readonly seq: number;
  readonly key: string;
}

interface Record<P> {
  deadline: number;
  payload: P;
  /** The heap entry that stands for this record (the others with this key are stale). */
  heapSeq: number;
  heapAt: number;
}

export interface Due<P> {
  readonly key: string;
  readonly deadline: number;
  readonly payload: P;
}

export class DeadlineQueue<P> {
  private readonly heap: Entry[] = [];
  private readonly records = new Map<string, Record<P>>();
  private seq = 0;

  /** Live deadlines (not heap entries). */
  get size(): number {
    return this.records.size;
  }

  has(key: string): boolean {
    return this.records.has(key);
  }

  deadlineOf(key: string): number | undefined {
    return this.records.get(key)?.deadline;
  }

  schedule(key: string, deadline: number, payload: P): void {
    const rec = this.records.get(key);
    if (rec) {
      rec.deadline = deadline;
      rec.payload = payload;
      if (rec.heapAt <= deadline) return;
      rec.heapSeq = this.push(deadline, key);
      rec.heapAt = deadline;
      return;
    }
    const heapSeq = this.push(deadline, key);
    this.records.set(key, { deadline, payload, heapSeq, heapAt: deadline });
  }

  cancel(key: string): void {
    this.records.delete(key);
  }

  /** The earliest due deadline (removed), or undefined when none is due at `now`. */
  popDue(now: number): Due<P> | undefined {
    for (;;) {
      const top = this.heap[0];
      if (top === undefined || top.at > now) return undefined;
      this.pop();
      const rec = this.records.get(top.key);
      if (!rec || rec.heapSeq !== top.seq) continue; // cancelled, or superseded by an earlier entry
      if (rec.deadline > top.at) {
        // Moved later since it was queued: queue it again at its real time, so that deadlines
        // still come out in order (and not at all while it is not due).
        rec.heapSeq = this.push(rec.deadline, top.key);
        rec.heapAt = rec.deadline;
        continue;
      }
      this.records.delete(top.key);
      return { key: top.key, deadline: rec.deadline, payload: rec.payload };
    }
  }

  private push(at: number, key: string): number {
    const seq = this.seq++;
    const heap = this.heap;
    heap.push({ at, seq, key });
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!less(heap[i] as Entry, heap[parent] as Entry)) break;
      [heap[i], heap[parent]] = [heap[parent] as Entry, heap[i] as Entry];
      i = parent;
    }
    return seq;
  }

  private pop(): void {
    const heap = this.heap;
    const last = heap.pop();
    if (last === undefined || heap.length === 0) return;
    heap[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < heap.length && less(heap[l] as Entry, heap[m] as Entry)) m = l;
      if (r < heap.length && less(heap[r] as Entry, heap[m] as Entry)) m = r;
      if (m === i) return;
      [heap[i], heap[m]] = [heap[m] as Entry, heap[i] as Entry];
      i = m;
    }
  }
}

function less(a: Entry, b: Entry): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}
