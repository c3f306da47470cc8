import { readFile } from 'node:fs/promises';
import { createServer as createTcpServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { BrokerError } from './errors.js';
import type { TlsListenerOptions } from './types.js';

/**
 * The TCP and TLS listeners of SPEC §3. Every accepted socket gets TCP_NODELAY: PUBACKs and
 * SUBACKs are tiny and latency-bound, and Nagle plus the peer's delayed ACK would add tens of
 * milliseconds to each (DESIGN.md measured ~10 ms for mqtt.js).
 */
export type OnSocket = (socket: Socket | TLSSocket) => void;

export async function listenTcp(host: string, port: number, onSocket: OnSocket): Promise<Server> {
  const server = createTcpServer({ noDelay: true }, (socket) => {
    socket.setNoDelay(true);
    onSocket(socket);
  });
  await listen(server, host, port, 'tcp');
  return server;
}

/** A PEM given as contents (Buffer, or a string holding a PEM block) or as a file path. */
async function loadPem(what: string, value: string | Buffer): Promise<Buffer> {
  if (Buffer.isBuffer(value)) return value;
  if (value.includes('-----BEGIN')) return Buffer.from(value);
  try {
    return await readFile(value);
  } catch (err) {
    throw new BrokerError('BROKER_ERR_TLS', `cannot read the ${what} file ${value}`, { cause: err });
  }
}

export async function listenTls(
  opts: TlsListenerOptions,
  defaultHost: string,
  onSocket: OnSocket,
  onTlsError: (err: Error) => void,
): Promise<Server> {
  const [cert, key, ca] = await Promise.all([
    loadPem('certificate', opts.cert),
    loadPem('key', opts.key),
    opts.ca === undefined ? Promise.resolve(undefined) : loadPem('CA', opts.ca),
  ]);
  let server: Server;
  try {
    server = createTlsServer({ cert, key, ...(ca ? { ca } : {}), minVersion: 'TLSv1.2', noDelay: true }, (socket) => {
      socket.setNoDelay(true);
      onSocket(socket);
    });
  } catch (err) {
    // A key that does not match the certificate, or a PEM that is not one, fails here.
    throw new BrokerError('BROKER_ERR_TLS', (err as Error).message, { cause: err });
  }
  // A failed handshake is the client's problem: log it, never let it reach 'error'.
  server.on('tlsClientError', onTlsError);
  await listen(server, opts.host ?? defaultHost, opts.port, 'tls');
  return server;
}

function listen(server: Server, host: string, port: number, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(new BrokerError('BROKER_ERR_LISTEN', `${what} ${host}:${port}: ${err.message}`, { cause: err }));
    server.once('error', onError);
    server.listen({ host, port }, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

export function boundPort(server: Server | undefined): number | undefined {
  const a = server?.address();
  return a && typeof a === 'object' ? a.port : undefined;
}

/** Stops accepting and resolves once the server is closed (the caller destroys open sockets). */
export function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) {
      resolve();
      return;
    }
    server.close(() => resolve());
  });
}
