import type { Sink } from './sink.js';

/**
 * The `embedded` sink (SPEC §5, the default). Readings are already in the gateway's local store
 * when a sink sees them (DESIGN.md: store first), so there is nothing to send: the writer only
 * acknowledges. It exists so that `embedded` is configured, run and reported in health like the
 * other sinks, with a cursor of its own.
 */
export function createEmbeddedSink(options: { readonly name?: string } = {}): Sink {
  return {
    name: options.name ?? 'embedded',
    write: () => Promise.resolve(),
    close: () => Promise.resolve(),
  };
}
