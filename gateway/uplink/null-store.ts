import { Readable } from 'node:stream';
import type { IStore, Packet } from 'mqtt';

/**
 * An mqtt.js outgoing store that keeps nothing. mqtt.js's default store remembers every
 * unacknowledged QoS 1 publish in memory and replays it, with its old callback, after a reconnect;
 * a second copy of the durable outbox that a restart loses and that the uplink would race with.
 * With this store the outbox is the only queue: after a reconnect the uplink resends from its
 * cursor, in order, and mqtt.js only correlates PUBACKs with callbacks (its `outgoing` map).
 */
export function createNullStore(): IStore {
  const store: IStore = {
    put(_packet, cb) {
      cb();
      return store;
    },
    createStream() {
      return new Readable({
        objectMode: true,
        read() {
          this.push(null);
        },
      }) as unknown as ReturnType<IStore['createStream']>;
    },
    // On PUBACK mqtt.js deletes the packet and passes (err, packet) to the publish callback:
    // no error, or every acknowledged publish would look failed.
    del(packet, cb) {
      cb(undefined, packet as Packet);
      return store;
    },
    get(packet, cb) {
      cb(new Error(`message ${String(packet.messageId)} is not kept (the outbox is the store)`));
      return store;
    },
    close(cb) {
      cb();
    },
  };
  return store;
}
