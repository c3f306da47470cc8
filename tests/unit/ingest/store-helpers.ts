import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Reading } from '../../../devices/reading.js';
import { openStore, type OpenStoreOptions, type Store, type StoreLogger } from '../../../ingest/store/index.js';

export interface LogRecord {
  level: 'info' | 'warn' | 'error';
  obj: object;
  msg: string | undefined;
}

export function recordingLogger(): StoreLogger & { records: LogRecord[]; at(level: LogRecord['level']): LogRecord[] } {
  const records: LogRecord[] = [];
  return {
    records,
    at: (level) => records.filter((r) => r.level === level),
    info: (obj, msg) => records.push({ level: 'info', obj, msg }),
    warn: (obj, msg) => records.push({ level: 'warn', obj, msg }),
    error: (obj, msg) => records.push({ level: 'error', obj, msg }),
  };
}

export function fakeClock(start = 1_733_300_000_000): { now: () => number; advance(ms: number): void; set(ms: number): void } {
  let t = start;
  return {
    now: () => t,
    advance: (ms) => {
      t += ms;
    },
    set: (ms) => {
      t = ms;
    },
  };
}

/** A temp directory per test; `cleanup` closes what is still open and removes it. */
export function tempStore() {
  const dir = mkdtempSync(join(tmpdir(), 'gridedge-store-'));
  const path = join(dir, 'data', 'store.db');
  const open: Store[] = [];
  const logger = recordingLogger();
  const clock = fakeClock();
  return {
    dir,
    path,
    logger,
    clock,
    open(options: Partial<OpenStoreOptions> = {}): Store {
      const store = openStore({ path, clock: clock.now, logger, ...options });
      open.push(store);
      return store;
    },
    async cleanup(): Promise<void> {
      for (const s of open) await s.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

let counter = 0;

export function telemetry(overrides: Partial<Reading> = {}): Reading {
  counter++;
  return {
    deviceId: 'SMK-0001',
    model: 'smoke-json',
    kind: 'smoke',
    ts: 1_733_300_000_000 + counter,
    receivedAt: 1_733_300_000_000 + counter,
    metrics: { battery_pct: 85, rssi_dbm: -71 },
    state: { smoke: false, tamper: false, fault: false, battery_low: false },
    events: ['heartbeat'],
    place: { grid: '110101013001002', building: '7', room: 'B1-3' },
    ...overrides,
  };
}

export function sos(overrides: Partial<Reading> = {}): Reading {
  counter++;
  return {
    deviceId: 'PGR-0302',
    model: 'pager-rf',
    kind: 'pager',
    ts: 1_733_300_000_000 + counter,
    receivedAt: 1_733_300_000_000 + counter,
    metrics: {},
    state: { battery_low: false },
    events: ['sos'],
    place: { grid: '110101013001002', building: '5', room: '302' },
    ...overrides,
  };
}

/** Settles-or-not probe: true once the promise has settled. */
export function track<T>(p: Promise<T>): { readonly settled: boolean; promise: Promise<T> } {
  const state = { settled: false, promise: p };
  p.then(
    () => {
      state.settled = true;
    },
    () => {
      state.settled = true;
    },
  );
  return state;
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
