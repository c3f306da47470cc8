import { closeSync, fsyncSync, openSync, renameSync, statSync, statfsSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Disk-full mode for the data directory (SPEC-NOTES "Disk full"). A reserve ("ballast") file of
 * `reserveBytes` is kept in the data directory. When free space falls below the low-water mark,
 * or a commit fails with SQLITE_FULL, the guard releases the reserve (synchronously, so the
 * failing commit can be retried at once) and tells the store to refuse telemetry: the space the
 * reserve gave back is for alarms, rule state and incidents only. It polls free space and leaves
 * the mode by itself once there is room for the reserve and a margin again.
 */

/** The reserve file inside the data directory. */
export const RESERVE_FILE = 'gridedge.reserve';

const MiB = 1024 * 1024;
const CHUNK = MiB;
const LOG_EVERY_MS = 60_000;

export interface DiskSpace {
  /** Bytes an unprivileged writer may still use (statfs `bavail × bsize`). */
  readonly free: number;
  readonly total: number;
}

export type DiskState = 'ok' | 'full';

export interface DiskHealth {
  readonly state: DiskState;
  /** At the last check. */
  readonly free: number;
  readonly total: number;
  /** Below this much free space the gateway enters disk-full mode. */
  readonly lowWaterBytes: number;
  /** Free space needed to recreate the reserve and leave disk-full mode. */
  readonly resumeBytes: number;
  readonly reserveBytes: number;
  /** `present`; `released` for alarms (disk-full mode); `absent`: none configured, or no room to create it yet. */
  readonly reserve: 'present' | 'released' | 'absent';
  /** Why the current disk-full mode began: `low_space` (a check) or `write_failed` (SQLITE_FULL). */
  readonly reason: 'low_space' | 'write_failed' | undefined;
  /** When the current disk-full mode began (gateway clock). */
  readonly since: number | undefined;
  /** Times disk-full mode was entered since start. */
  readonly episodes: number;
}

export interface DiskGuardLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface DiskGuardDeps {
  /** The data directory (it must exist). */
  readonly dir: string;
  /** Size of the reserve file; 0: no reserve (the mode still switches on the low-water mark). */
  readonly reserveBytes: number;
  /** Told when the mode changes (the store refuses or accepts telemetry). A throw is logged. */
  readonly onChange: (full: boolean) => void;
  readonly logger: DiskGuardLogger;
  readonly clock: () => number;
  /** Default 1 s: a statfs is a few microseconds. */
  readonly pollMs?: number;
  /** Injected by tests; default `statfsSync` on `dir`. */
  readonly statfs?: (dir: string) => DiskSpace;
}

export interface DiskGuard {
  /** Creates the reserve when there is room (keeps a right-sized one), checks once, then polls. */
  start(): void;
  stop(): void;
  /** One check of free space: enters or leaves disk-full mode, (re)creates the reserve. */
  check(): void;
  /**
   * A write failed with SQLITE_FULL (or ENOSPC). Enters disk-full mode unless free space says the
   * disk is not the cause (the store's own `maxDbBytes` cap). True when it released the reserve
   * just now, i.e. a retry of the write may fit.
   */
  reportFull(): boolean;
  health(): DiskHealth;
}

export function diskSpace(dir: string): DiskSpace {
  const s = statfsSync(dir);
  return { free: s.bavail * s.bsize, total: s.blocks * s.bsize };
}

/** The low-water mark: a quarter of the reserve, at least 1 MiB. */
export function lowWaterBytes(reserveBytes: number): number {
  return Math.max(MiB, Math.floor(reserveBytes / 4));
}

export function createDiskGuard(deps: DiskGuardDeps): DiskGuard {
  const { dir, reserveBytes, logger, clock } = deps;
  const statfs = deps.statfs ?? diskSpace;
  const path = join(dir, RESERVE_FILE);
  const lowWater = lowWaterBytes(reserveBytes);
  // Room for the reserve plus twice the low-water mark: recreating it cannot put us straight back.
  const resumeAt = reserveBytes + 2 * lowWater;

  let state: DiskState = 'ok';
  let reserve: DiskHealth['reserve'] = 'absent';
  let reason: DiskHealth['reason'];
  let since: number | undefined;
  let episodes = 0;
  let last: DiskSpace = { free: 0, total: 0 };
  let timer: NodeJS.Timeout | undefined;
  let lastFullLogAt = Number.NEGATIVE_INFINITY;
  let unloggedEpisodes = 0;
  let lastProblemLogAt = Number.NEGATIVE_INFINITY;

  function problem(err: unknown, msg: string): void {
    const now = clock();
    if (now - lastProblemLogAt < LOG_EVERY_MS) return;
    lastProblemLogAt = now;
    logger.warn({ err, dir }, msg);
  }

  function measure(): DiskSpace | undefined {
    try {
      last = statfs(dir);
      return last;
    } catch (err) {
      problem(err, 'disk: cannot read the free space of the data directory');
      return undefined;
    }
  }

  function tell(full: boolean): void {
    try {
      deps.onChange(full);
    } catch (err) {
      logger.error({ err }, 'disk: a mode listener threw');
    }
  }

  function release(): void {
    if (reserve !== 'present') return;
    try {
      unlinkSync(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        logger.error({ err, path }, 'disk: cannot delete the reserve file');
        return;
      }
    }
    reserve = 'released';
  }

  /** Writes the reserve next to its place, then renames it there: a half-written one is never mistaken for it. */
  function createReserve(): boolean {
    if (reserveBytes === 0) return true;
    const tmp = `${path}.tmp`;
    let fd: number | undefined;
    try {
      fd = openSync(tmp, 'w');
      const zeros = Buffer.alloc(Math.min(CHUNK, reserveBytes));
      for (let written = 0; written < reserveBytes; ) {
        written += writeSync(fd, zeros, 0, Math.min(zeros.length, reserveBytes - written));
      }
      fsyncSync(fd);
      closeSync(fd);
      fd = undefined;
      renameSync(tmp, path);
      reserve = 'present';
      return true;
    } catch (err) {
      if (fd !== undefined) closeSync(fd);
      try {
        unlinkSync(tmp);
      } catch {
        // Nothing was created.
      }
      problem(err, 'disk: cannot create the reserve file');
      return false;
    }
  }

  function enter(why: NonNullable<DiskHealth['reason']>): void {
    const hadReserve = reserve === 'present';
    release();
    state = 'full';
    reason = why;
    since = clock();
    episodes++;
    unloggedEpisodes++;
    tell(true);
    const now = clock();
    if (now - lastFullLogAt >= LOG_EVERY_MS) {
      lastFullLogAt = now;
      logger.error(
        { free: last.free, lowWaterBytes: lowWater, reason: why, reserveReleased: hadReserve, episodes: unloggedEpisodes },
        'disk full: plain telemetry is dropped; alarms, rules, incidents and the uplink go on in the reserve',
      );
      unloggedEpisodes = 0;
    }
  }

  function leave(): void {
    const lasted = since === undefined ? 0 : clock() - since;
    state = 'ok';
    reason = undefined;
    since = undefined;
    tell(false);
    logger.warn({ free: last.free, fullForMs: lasted, reserve }, 'disk space recovered: telemetry accepted again');
  }

  function check(): void {
    const space = measure();
    if (space === undefined) return;
    if (state === 'ok') {
      if (space.free < lowWater) enter('low_space');
      else if (reserve !== 'present' && reserveBytes > 0 && space.free >= resumeAt && createReserve()) measure();
      return;
    }
    if (space.free < resumeAt) return;
    if (reserve !== 'present' && !createReserve()) return;
    const after = measure();
    if (after !== undefined && after.free < lowWater) return; // someone else took the space meanwhile
    leave();
  }

  return {
    start() {
      try {
        if (reserveBytes > 0 && statSync(path).size === reserveBytes) reserve = 'present';
        else unlinkSync(path); // resized in the config, or a leftover of reserveBytes: 0
      } catch {
        // None yet.
      }
      const space = measure();
      if (reserve !== 'present' && reserveBytes > 0 && space !== undefined && space.free >= resumeAt) createReserve();
      check();
      timer ??= setInterval(check, deps.pollMs ?? 1000).unref();
    },
    stop() {
      if (timer !== undefined) clearInterval(timer);
      timer = undefined;
    },
    check,
    reportFull() {
      const hadReserve = reserve === 'present';
      if (state === 'ok') {
        const space = measure();
        // Plenty of room on the disk: the database hit its own cap, which the store handles.
        if (space !== undefined && space.free >= lowWater) return false;
        enter('write_failed');
      } else release();
      return hadReserve && reserve === 'released';
    },
    health: () => ({
      state,
      free: last.free,
      total: last.total,
      lowWaterBytes: lowWater,
      resumeBytes: resumeAt,
      reserveBytes,
      reserve,
      reason,
      since,
      episodes,
    }),
  };
}
