import { connect, createServer } from 'node:net';

/**
 * A TCP port that was free a moment ago, chosen below the kernel's ephemeral range
 * (/proc/sys/net/ipv4/ip_local_port_range, 32768–60999 on Debian). Tests restart influxd and
 * Mosquitto on the same port after an outage; a port from the ephemeral range can meanwhile be
 * taken as the *source* port of any outgoing connection (the sink's retries, for one), and the
 * restart then fails with EADDRINUSE. Another process can still take the port before the caller
 * binds, so helpers that start servers retry on a fresh port when theirs is taken.
 */
const LOW = 20_000;
const HIGH = 32_767;

export async function freePort(host = '127.0.0.1'): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = LOW + Math.floor(Math.random() * (HIGH - LOW + 1));
    if (await canBind(host, port)) return port;
  }
  throw new Error(`no free port between ${LOW} and ${HIGH} on ${host}`);
}

function canBind(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve(true)));
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
