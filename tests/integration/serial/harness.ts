import { pino, type Logger } from 'pino';
import type { DeviceRecord } from '../../../devices/device-record.js';

/** GRIDEDGE_TEST_LOG=debug shows what the bus and the master did. */
export const logger: Logger = pino({ level: process.env.GRIDEDGE_TEST_LOG ?? 'silent' });

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `predicate` every 20 ms; fails with `what` after `timeoutMs`. */
export async function waitFor(what: string, predicate: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(20);
  }
}

export function meter(id: string, address: number, bus = 'rs485-1'): DeviceRecord {
  return { id, model: 'elec-ers1', place: { grid: '110101013001002', building: '7', room: `B1-${address}` }, bus, address };
}

export function pager(id: string, rf: string, bus = 'rf-1'): DeviceRecord {
  return { id, model: 'pager-rf', place: { grid: '110101013001002', building: '5', room: '302' }, bus, rf };
}

export const intervals = (times: readonly number[]): number[] => times.slice(1).map((t, i) => t - (times[i] ?? 0));
