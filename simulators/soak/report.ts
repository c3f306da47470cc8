import { formatSummary } from '../progress.js';
import type { IterationRow, Kill9Report } from './kill-9.js';

/** The soak's per-iteration table and summary, as the script prints them (and the test logs them). */

const COLUMNS: readonly [string, (r: IterationRow) => string | number][] = [
  ['iter', (r) => r.iteration],
  ['start ms', (r) => r.startMs],
  ['kill after ms', (r) => r.killAfterMs],
  ['sent', (r) => r.sent],
  ['acked', (r) => r.acked],
  ['unacked', (r) => r.unacked],
  ['alarms sent', (r) => r.alarmsSent],
  ['alarms acked', (r) => r.alarmsAcked],
  ['exit', (r) => r.exit],
];
const WIDTHS = COLUMNS.map(([h]) => Math.max(h.length, 8));

export function tableHeader(): string {
  return COLUMNS.map(([h], i) => h.padStart(WIDTHS[i] ?? 8)).join('  ') + '\n';
}

export function tableRow(r: IterationRow): string {
  return COLUMNS.map(([, f], i) => String(f(r)).padStart(WIDTHS[i] ?? 8)).join('  ') + '\n';
}

function spread(values: readonly number[]): string {
  if (values.length === 0) return 'none';
  const sorted = [...values].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)] ?? 0;
  return `median ${median} ms, min ${sorted[0]} ms, max ${sorted.at(-1)} ms`;
}

export function summaryRows(report: Kill9Report): [string, string | number][] {
  const v = report.verification;
  // The restarts: every start after a kill -9 (iteration 2 onwards, and the final one).
  const restarts = [...report.rows.slice(1).map((r) => r.startMs), report.finalStartMs];
  return [
    ['seed', report.seed],
    ['iterations (kill -9)', report.rows.length],
    ['messages sent', report.rows.reduce((a, r) => a + r.sent, 0)],
    ['messages acknowledged', report.acked],
    ['acknowledged, lost', v.lost],
    ['alarms acknowledged', report.alarmsAcked],
    ['alarm readings stored', v.alarmReadings],
    ['incidents expected / seen', `${v.incidentsExpected} / ${v.incidentsSeen}`],
    ['opened upstream', `${v.openedUpstream} of ${v.incidentsSeen}`],
    ['upstream messages', `${v.upstreamMessages} (${v.resends} re-sends of the same version)`],
    ['restart after kill -9', spread(restarts)],
    ['catch-up after the last restart', `${report.catchUpMs} ms`],
    ['clean stop (SIGTERM)', `${report.finalExit} after ${report.stopMs} ms`],
    ['problems', v.problems.length === 0 ? 'none' : v.problems.length],
  ];
}

export function formatKill9Report(report: Kill9Report): string {
  const problems = report.verification.problems.map((p) => `  ✗ ${p}\n`).join('');
  return formatSummary('kill -9 under mixed load', summaryRows(report)) + problems;
}
