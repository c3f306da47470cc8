import type Database from 'better-sqlite3';
import type { Reading } from '../../devices/reading.js';
import type { DeviceState } from './types.js';

export interface Row {
  device_id: string;
  kind: Reading['kind'];
  model: string;
  state: string;
  metrics: string;
  last_seen: number;
  last_ts: number;
  last_seq: number;
}

/**
 * Last known state per device, written in the transaction of the reading that changed it, so
 * that after a restart a codec compares with what was stored (SPEC §3.3) and offline timers
 * resume from the stored last-seen. All of it is cached: a gateway has thousands of devices,
 * not millions.
 */
export function prepareDeviceStates(db: Database.Database) {
  const s = {
    all: db.prepare<[], Row>('SELECT * FROM device_state'),
    upsert: db.prepare<[string, string, string, string, string, number, number, number]>(
      `INSERT INTO device_state (device_id, kind, model, state, metrics, last_seen, last_ts, last_seq)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (device_id) DO UPDATE SET kind = excluded.kind, model = excluded.model, state = excluded.state,
         metrics = excluded.metrics, last_seen = excluded.last_seen, last_ts = excluded.last_ts, last_seq = excluded.last_seq`,
    ),
  };
  const cache = new Map<string, DeviceState>(s.all.all().map((r) => [r.device_id, fromRow(r)]));

  return {
    get: (deviceId: string): DeviceState | undefined => cache.get(deviceId),
    all: (): DeviceState[] => [...cache.values()],

    /**
     * Inside the commit transaction: folds the batch's readings (in order) into the states and
     * writes each changed device once. Returns the new states for `apply` after the commit.
     */
    write(batch: readonly { seq: number; reading: Reading }[]): Map<string, DeviceState> {
      const next = new Map<string, DeviceState>();
      for (const { seq, reading } of batch) {
        const prev = next.get(reading.deviceId) ?? cache.get(reading.deviceId);
        next.set(reading.deviceId, {
          deviceId: reading.deviceId,
          kind: reading.kind,
          model: reading.model,
          state: { ...prev?.state, ...reading.state },
          metrics: { ...prev?.metrics, ...reading.metrics },
          lastSeen: reading.receivedAt,
          lastTs: reading.ts,
          lastSeq: seq,
        });
      }
      for (const d of next.values()) {
        s.upsert.run(d.deviceId, d.kind, d.model, JSON.stringify(d.state), JSON.stringify(d.metrics), d.lastSeen, d.lastTs, d.lastSeq);
      }
      return next;
    },

    apply(next: ReadonlyMap<string, DeviceState>): void {
      for (const [id, state] of next) cache.set(id, state);
    },
  };
}

export function fromRow(r: Row): DeviceState {
  return {
    deviceId: r.device_id,
    kind: r.kind,
    model: r.model,
    state: JSON.parse(r.state) as Record<string, boolean>,
    metrics: JSON.parse(r.metrics) as Record<string, number>,
    lastSeen: r.last_seen,
    lastTs: r.last_ts,
    lastSeq: r.last_seq,
  };
}

export type DeviceStatesTable = ReturnType<typeof prepareDeviceStates>;

