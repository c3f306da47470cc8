import { stat } from 'node:fs/promises';
import type { Logger } from 'pino';
import { formatIssue } from '../config/errors.js';
import type { DeviceRegistry, RegistryLoad } from './registry.js';

/**
 * The registry the running gateway uses: every lookup goes to the current one, so replacing it
 * (the registry file changed, SPEC §11) reaches the broker, the serial buses, the rules and the
 * API at once, without restarting anything.
 */
export interface LiveRegistry extends DeviceRegistry {
  replace(next: DeviceRegistry): void;
  /** Called after each replace. Returns `off`. */
  onChange(listener: () => void): () => void;
}

export function createLiveRegistry(initial: DeviceRegistry): LiveRegistry {
  let current = initial;
  const listeners = new Set<() => void>();
  return {
    get size() {
      return current.size;
    },
    get: (id) => current.get(id),
    byAddress: (bus, address) => current.byAddress(bus, address),
    byRf: (bus, rf) => current.byRf(bus, rf),
    list: () => current.list(),
    verify: (id, password) => current.verify(id, password),
    replace(next) {
      current = next;
      for (const l of listeners) l();
    },
    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}

export interface RegistryWatch {
  stop(): void;
  /** Checks the file now (tests, and the first check after start). */
  check(): Promise<void>;
}

/**
 * Re-reads the registry file when it changes (its size or modification time), by polling: the
 * import writes a temp file and renames it over the old one, which file watchers report
 * unreliably across platforms. A file that no longer validates is refused with every issue
 * logged, and the gateway keeps the registry it has — a typo must not take a site offline.
 */
export function watchRegistry(deps: {
  file: string;
  load: () => Promise<RegistryLoad>;
  live: LiveRegistry;
  logger: Pick<Logger, 'info' | 'error'>;
  intervalMs?: number;
}): RegistryWatch {
  let last: string | undefined;
  let busy = false;
  const signature = async () => {
    try {
      const s = await stat(deps.file);
      return `${s.size}:${s.mtimeMs}`;
    } catch {
      return 'missing';
    }
  };
  const check = async () => {
    if (busy) return;
    busy = true;
    try {
      const sig = await signature();
      if (last === undefined) {
        last = sig;
        return;
      }
      if (sig === last) return;
      last = sig;
      const loaded = await deps.load();
      if (!loaded.ok) {
        deps.logger.error({ file: deps.file, issues: loaded.issues.map(formatIssue) }, 'registry file changed but is invalid: keeping the devices already loaded');
        return;
      }
      const before = deps.live.size;
      deps.live.replace(loaded.registry);
      deps.logger.info({ file: deps.file, before, devices: loaded.registry.size }, 'registry reloaded');
    } finally {
      busy = false;
    }
  };
  const timer = setInterval(() => {
    check().catch((err: unknown) => deps.logger.error({ err }, 'registry check failed'));
  }, deps.intervalMs ?? 2_000);
  timer.unref();
  return { stop: () => clearInterval(timer), check };
}
