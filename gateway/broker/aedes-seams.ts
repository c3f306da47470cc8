import type { Aedes, Client, PublishPacket } from 'aedes';

/**
 * The few places where the broker reaches past aedes' documented hooks, in one file so that an
 * aedes upgrade has one place to check (verified against aedes 1.2.0 and mqtt-packet 9; the
 * integration tests fail if any of them stops working). Each seam checks what it relies on at
 * run time and degrades to plain aedes behaviour, with a warning, rather than throwing.
 */

type Done = (err?: Error | null) => void;
type PublishFn = (packet: PublishPacket, client: Client | null, done?: Done) => void;

/**
 * "Treat as handled": a PUBLISH that authorizePublish accepted but that must reach no subscriber.
 *
 * Why: aedes 1.x turns any error from authorizePublish into a closed connection (lib/handlers/
 * publish.js → runSeries → client 'error' → _onError; docs/Aedes.md: "If an error occurs the
 * client connection will be closed"), which MQTT-3.3.5-2 permits but SPEC §3 does not want for
 * an ACL refusal ("dropped and counted"). The other choice MQTT-3.3.5-2 allows is a positive
 * acknowledgement without delivery. aedes has no hook for that, but after authorizePublish it
 * hands the very same packet object to `broker.publish(packet, client, done)` (after writing the
 * PUBACK for QoS 1, before PUBREC for QoS 2), so a wrapper around the instance's `publish` that
 * skips marked packets gives exactly that: acknowledged by the normal QoS rules, never retained,
 * queued or forwarded. The same mark keeps device uplinks out of aedes' routing altogether: no
 * one may subscribe to `dev/+/up`, so routing them would only cost a persistence lookup and an
 * mqemitter pass per message.
 */
export function installHandledShortCircuit(broker: Aedes): (packet: object) => void {
  const handled = new WeakSet<object>();
  const target = broker as unknown as { publish: PublishFn };
  const original = target.publish.bind(broker) as (packet: PublishPacket, client: Client | Done | null, done?: Done) => void;
  target.publish = (packet, client, done) => {
    // aedes' own signature: publish(packet, [client], done).
    const cb = typeof client === 'function' ? (client as Done) : done;
    if (handled.has(packet)) {
      handled.delete(packet);
      if (cb) setImmediate(cb, null);
      return;
    }
    original(packet, client, done);
  };
  return (packet) => handled.add(packet);
}

interface ParserLike {
  client?: Client;
  packet: { length: number; cmd?: string };
  _parseLength(): boolean;
  _emitError(err: Error): void;
}

/**
 * A ceiling on the MQTT Remaining Length of any packet, checked as soon as the fixed header is
 * read, before the body is buffered. mqtt-packet accumulates a whole packet (up to 256 MiB) in
 * memory before aedes sees it, and neither aedes 1.x nor mqtt-packet offer a limit for MQTT 3.1.1
 * (moscajs/aedes#831 is open). aedes creates one parser per client (`client._parser`); this
 * overrides `_parseLength` on that instance only, so other mqtt-packet users in the process (the
 * uplink's mqtt.js) are untouched. Over the ceiling, the parser errors and aedes closes the
 * connection, as it does for any malformed packet.
 *
 * One shared function for all parsers (nothing allocated per client beyond the property). The
 * returned installer answers false when a parser does not look like mqtt-packet's; then only the
 * payload check in authorizePublish applies.
 */
export function createPacketSizeGuard(
  maxRemainingLength: number,
  onTooLarge: (client: Client | undefined, length: number) => void,
): (client: Client) => boolean {
  let original: (() => boolean) | undefined;
  function guardedParseLength(this: ParserLike): boolean {
    const ok = (original as () => boolean).call(this);
    if (ok && this.packet.length > maxRemainingLength) {
      onTooLarge(this.client, this.packet.length);
      this._emitError(new Error(`packet of ${this.packet.length} bytes is over the limit of ${maxRemainingLength}`));
      return false;
    }
    return ok;
  }
  return (client) => {
    const parser = (client as unknown as { _parser?: ParserLike })._parser;
    if (!parser || typeof parser._parseLength !== 'function' || typeof parser._emitError !== 'function') return false;
    if (!original) {
      const proto = Object.getPrototypeOf(parser) as Partial<ParserLike>;
      if (typeof proto._parseLength !== 'function') return false;
      original = proto._parseLength;
    }
    parser._parseLength = guardedParseLength;
    return true;
  };
}

/**
 * aedes calls authorizePublish for a client's will with the very object it keeps in
 * `client.will` (lib/client.js close() → finish()), and clears that field only afterwards, so
 * identity tells a will from a PUBLISH that happens to have the same topic.
 */
export function isWillOf(client: Client, packet: PublishPacket): boolean {
  return (client as unknown as { will?: unknown }).will === packet;
}
