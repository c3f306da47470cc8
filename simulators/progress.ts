/*
 * A one-line progress display for a terminal: the line is redrawn in place with `\r` and
 * "erase to end of line". When the output is not a TTY (a pipe, a log file, CI) it does nothing
 * at all — no escape codes in logs — and only the summary is printed.
 */

export interface ProgressOutput {
  readonly isTTY?: boolean;
  /** Terminal width, when known: the line is cut to fit so that it never wraps. */
  readonly columns?: number;
  write(text: string): unknown;
}

export interface ProgressLine {
  /** Redraws the line (at most every `minIntervalMs`, unless `force`). */
  update(text: string, force?: boolean): void;
  /** Clears the line; the next output starts at the beginning of an empty line. */
  done(): void;
  readonly active: boolean;
}

export interface ProgressOptions {
  /** Default 100 ms. */
  readonly minIntervalMs?: number;
  readonly now?: () => number;
}

const CLEAR_TO_EOL = '\u001b[K';

export function createProgress(out: ProgressOutput, options: ProgressOptions = {}): ProgressLine {
  const active = out.isTTY === true;
  const minIntervalMs = options.minIntervalMs ?? 100;
  const now = options.now ?? Date.now;
  let last = Number.NEGATIVE_INFINITY;
  let drawn = false;
  return {
    active,
    update(text, force = false) {
      if (!active) return;
      const t = now();
      if (!force && t - last < minIntervalMs) return;
      last = t;
      const width = out.columns !== undefined && out.columns > 1 ? out.columns - 1 : undefined;
      const line = width !== undefined && text.length > width ? `${text.slice(0, Math.max(0, width - 1))}…` : text;
      out.write(`\r${line}${CLEAR_TO_EOL}`);
      drawn = true;
    },
    done() {
      if (!active || !drawn) return;
      out.write(`\r${CLEAR_TO_EOL}`);
      drawn = false;
    },
  };
}

/** Aligned `label  value` lines under a title: the summary at the end of a run. */
export function formatSummary(title: string, rows: readonly (readonly [string, string | number])[]): string {
  const width = Math.max(0, ...rows.map(([label]) => label.length));
  return [title, ...rows.map(([label, value]) => `  ${label.padEnd(width)}  ${value}`)].join('\n') + '\n';
}

export function printSummary(write: (text: string) => unknown, title: string, rows: readonly (readonly [string, string | number])[]): void {
  write(formatSummary(title, rows));
}
