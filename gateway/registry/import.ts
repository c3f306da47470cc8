import { randomBytes } from 'node:crypto';
import { open, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { describeFsError, type ConfigIssue } from '../config/errors.js';
import type { DeviceCells } from './columns.js';
import { stringifyDeviceCsv } from './csv.js';
import { readDeviceCsvFile, validateDeviceRows, type RegistryContext, type SourceRow } from './registry.js';
import { hashSecret } from './secrets.js';

/**
 * `gridedge devices import NEW.csv` (SPEC §11): all or nothing. Every row of NEW.csv is checked,
 * and so is the registry that would result (a new meter must not take an address already used on
 * its bus); when anything is wrong, every problem is reported and nothing is written. Otherwise
 * the rows are merged into the registry file (same id: replaced in place, new ids appended), plain
 * secrets become scrypt hashes — including any an installer typed into the registry file itself —
 * and the file is replaced atomically, so the gateway watching it never reads half a file.
 *
 * Importing the registry file onto itself is how a hand-edited registry gets its plain secrets
 * hashed.
 */
export interface ImportOptions {
  readonly newFile: string;
  readonly registryFile: string;
  readonly ctx: RegistryContext;
  readonly hash?: (secret: string) => Promise<string>;
  /** How to name files in messages (default: as given). */
  readonly display?: (path: string) => string;
}

export type ImportResult =
  | {
      readonly ok: true;
      readonly added: number;
      readonly replaced: number;
      /** Plain secrets hashed on the way to disk. */
      readonly hashed: number;
      readonly total: number;
      /** Whether NEW.csv itself holds plain secrets, which the operator should now delete. */
      readonly newFileHasPlainSecrets: boolean;
    }
  | { readonly ok: false; readonly issues: readonly ConfigIssue[] };

export async function importDevices(options: ImportOptions): Promise<ImportResult> {
  const display = options.display ?? ((p: string) => p);
  const incoming = await readDeviceCsvFile(options.newFile, display);
  if (incoming.issues.length > 0) return { ok: false, issues: incoming.issues };
  const alone = validateDeviceRows(incoming.rows, options.ctx);
  if (alone.issues.length > 0) return { ok: false, issues: alone.issues };

  const sameFile = resolve(options.newFile) === resolve(options.registryFile);
  const existing = sameFile ? { rows: [], issues: [], bom: incoming.bom } : await readExisting(options.registryFile, display);
  if (existing.issues.length > 0) return { ok: false, issues: existing.issues };

  const incomingIds = new Set(incoming.rows.map((r) => r.cells.id));
  const kept = existing.rows.filter((r) => !incomingIds.has(r.cells.id));
  // Checked in this order so that a conflict is reported on the imported row, not the old one.
  const merged = validateDeviceRows([...kept, ...incoming.rows], options.ctx);
  if (merged.issues.length > 0) return { ok: false, issues: merged.issues };

  const hash = options.hash ?? ((s: string) => hashSecret(s));
  const cellsOf = new Map<SourceRow, DeviceCells>();
  let hashed = 0;
  await Promise.all(
    merged.rows.map(async (r) => {
      if (r.plainSecret === undefined) return void cellsOf.set(r.source, r.source.cells);
      hashed++;
      cellsOf.set(r.source, { ...r.source.cells, secret: await hash(r.plainSecret) });
    }),
  );

  // Written order: the registry's own order with replacements in place, then new devices.
  const byId = new Map(incoming.rows.map((r) => [r.cells.id, r]));
  const out: DeviceCells[] = [];
  const placed = new Set<SourceRow>();
  for (const old of existing.rows) {
    const row = byId.get(old.cells.id) ?? old;
    if (placed.has(row)) continue;
    placed.add(row);
    out.push(cellsOf.get(row) ?? row.cells);
  }
  for (const row of incoming.rows) if (!placed.has(row)) out.push(cellsOf.get(row) ?? row.cells);

  await writeFileAtomic(options.registryFile, stringifyDeviceCsv(out, { bom: existing.bom ?? false }));
  const replaced = existing.rows.length - kept.length;
  return {
    ok: true,
    added: sameFile ? 0 : incoming.rows.length - replaced,
    replaced: sameFile ? 0 : replaced,
    hashed,
    total: out.length,
    newFileHasPlainSecrets: !sameFile && alone.rows.some((r) => r.plainSecret !== undefined),
  };
}

/** The registry file as it is; a missing file is an empty registry that the import creates. */
async function readExisting(path: string, display: (p: string) => string) {
  try {
    await stat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { rows: [] as SourceRow[], issues: [] as ConfigIssue[], bom: false };
  }
  return readDeviceCsvFile(path, display);
}

/** Thrown when the registry cannot be written; the CLI maps it to exit code 1 (a runtime failure). */
export class RegistryWriteError extends Error {
  override readonly name = 'RegistryWriteError';
  readonly code = 'REG_ERR_WRITE' as const;
}

/**
 * Write to a temporary file beside the target, flush it to the disk, rename it over the target
 * (atomic on POSIX), then flush the folder so the rename itself survives a power cut. The file
 * holds secret hashes and residents' phone numbers: a new file is readable by its owner only,
 * an existing file keeps its mode.
 */
export async function writeFileAtomic(path: string, data: string): Promise<void> {
  let mode = 0o600;
  try {
    mode = (await stat(path)).mode & 0o777;
  } catch {
    // a new file
  }
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    const fh = await open(tmp, 'wx', mode);
    try {
      await fh.writeFile(data, 'utf8');
      await fh.chmod(mode); // open()'s mode is masked by the umask
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw new RegistryWriteError(`cannot write ${path}: ${describeFsError(err)}`, { cause: err });
  }
  try {
    const dir = await open(dirname(path), 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  } catch {
    // Not every file system lets a folder be fsynced; the rename is done either way.
  }
}
