import { connect, createServer } from 'node:net';

/**
 * A TCP port that was free a moment ago: bind 127.0.0.1:0, read the port, release it. Another
 * process can take it before the caller binds, so helpers that start servers retry on a fresh
 * port when theirs is taken (see `startMosquitto`, `startInfluxd`).
 */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen({ host, port: 0, exclusive: true }, () => {
      const address = server.address();
      if (address === null || typeof address === 'string') {
        server.close();
        reject(new Error(`cannot read the port bound on ${host}`));
        return;
      }
      server.close((err) => (err ? reject(err) : resolve(address.port)));
    });
  });
}

/** Resolves once a TCP connection to host:port succeeds; rejects after `timeoutMs`. */
export async function waitForPort(port: number, host = '127.0.0.1', timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError = 'no attempt';
  while (Date.now() < deadline) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect({ host, port });
      const timer = setTimeout(() => {
        socket.destroy();
        lastError = 'connect timed out';
        resolve(false);
      }, Math.max(50, Math.min(1_000, deadline - Date.now())));
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.end();
        socket.destroy();
        resolve(true);
      });
      socket.once('error', (err) => {
        clearTimeout(timer);
        lastError = err.message;
        resolve(false);
      });
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listens on ${host}:${port} after ${timeoutMs} ms (${lastError})`);
}
