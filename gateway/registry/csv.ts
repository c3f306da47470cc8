import { parse } from 'csv-parse/sync';
import { stringify } from 'csv-stringify/sync';
import type { ConfigIssue } from '../config/errors.js';
import { DEVICE_COLUMNS, type DeviceCells, type DeviceColumn } from './columns.js';

/**
 * The device registry file, SPEC §11: UTF-8 CSV (RFC 4180 quoting, so `"地下一层,3号"` is one
 * cell), a header naming the twelve columns (any order), one device a line, empty cell = absent.
 * This module only reads and writes the shape; what the cells mean is checked in registry.ts,
 * where the site, the buses and the model catalogue are known.
 */
export interface CsvRow {
  /** 1-based line where the row starts, as an editor shows it. */
  readonly line: number;
  readonly cells: DeviceCells;
}

export interface ParsedCsv {
  readonly rows: readonly CsvRow[];
  readonly issues: readonly ConfigIssue[];
  /** Whether the file started with a UTF-8 byte-order mark (Excel writes one); the writer keeps it. */
  readonly bom: boolean;
}

const HEADER = DEVICE_COLUMNS.join(',');

export function parseDeviceCsv(data: string | Uint8Array, file: string): ParsedCsv {
  let text: string;
  try {
    text = typeof data === 'string' ? data : new TextDecoder('utf-8', { fatal: true }).decode(data);
  } catch {
    // Excel on a Chinese Windows saves CSV as GBK by default.
    return fail(file, 'REG_ERR_CSV', 'the file is not UTF-8 text (in Excel: save as "CSV UTF-8")');
  }
  const bom = text.startsWith('\uFEFF');
  let records: { record: string[]; info: { lines: number } }[];
  try {
    records = parse(text, { bom: true, info: true, relax_column_count: true, skip_empty_lines: true, trim: true }) as unknown as typeof records;
  } catch (err) {
    const e = err as { message?: string; lines?: number };
    return fail(file, 'REG_ERR_CSV', `CSV: ${e.message ?? String(err)}`, e.lines);
  }

  const [head, ...body] = records;
  if (!head) return fail(file, 'REG_ERR_HEADER', `the file is empty; the first line must be the header ${HEADER}`);
  const names = head.record.map((c) => c.trim().toLowerCase());
  const headerIssues = checkHeader(names);
  if (headerIssues.length > 0) {
    return { rows: [], bom, issues: headerIssues.map((message) => ({ code: 'REG_ERR_HEADER', file, line: head.info.lines, message })) };
  }
  const columns = names as DeviceColumn[];

  const rows: CsvRow[] = [];
  const issues: ConfigIssue[] = [];
  for (const { record, info } of body) {
    // info.lines is where the record ends; a quoted cell may span lines.
    const line = info.lines - record.reduce((n, cell) => n + (cell.match(/\n/g)?.length ?? 0), 0);
    if (record.every((c) => c === '')) continue;
    if (record.length !== columns.length) {
      issues.push({ code: 'REG_ERR_ROW', file, line, message: `the row has ${record.length} cells, the header has ${columns.length} (a comma inside a cell needs "quotes")` });
      continue;
    }
    const cells: DeviceCells = {};
    record.forEach((value, i) => {
      const column = columns[i];
      if (column !== undefined && value !== '') cells[column] = value;
    });
    rows.push({ line, cells });
  }
  return { rows, issues, bom };
}

function checkHeader(names: readonly string[]): string[] {
  const known = new Set<string>(DEVICE_COLUMNS);
  const problems: string[] = [];
  if (!names.includes('id') && names.some((n) => /^[A-Za-z0-9]/.test(n) && !known.has(n))) {
    return [`the first line must be the header ${HEADER}`];
  }
  const unknown = names.filter((n) => !known.has(n));
  const missing = DEVICE_COLUMNS.filter((c) => !names.includes(c));
  const twice = names.filter((n, i) => names.indexOf(n) !== i);
  if (unknown.length > 0) problems.push(`unknown column${unknown.length > 1 ? 's' : ''} ${unknown.map((n) => JSON.stringify(n)).join(', ')}`);
  if (missing.length > 0) problems.push(`missing column${missing.length > 1 ? 's' : ''} ${missing.join(', ')}`);
  if (twice.length > 0) problems.push(`column${twice.length > 1 ? 's' : ''} ${[...new Set(twice)].join(', ')} given twice`);
  if (problems.length > 0) problems.push(`the header is ${HEADER}`);
  return problems;
}

function fail(file: string, code: ConfigIssue['code'], message: string, line?: number): ParsedCsv {
  return { rows: [], bom: false, issues: [{ code, file, ...(line !== undefined ? { line } : {}), message }] };
}

/** Writes rows in the canonical column order, quoting only where RFC 4180 needs it. */
export function stringifyDeviceCsv(rows: readonly DeviceCells[], options: { bom?: boolean } = {}): string {
  const body = stringify(
    rows.map((cells) => DEVICE_COLUMNS.map((c) => cells[c] ?? '')),
    { header: false, record_delimiter: '\n' },
  );
  return `${options.bom ? '\uFEFF' : ''}${HEADER}\n${body}`;
}
