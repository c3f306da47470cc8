import { writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { startChild, type Child } from './children.js';

/*
 * The upstream broker of a soak run started from the command line (tests use
 * tests/helpers/mosquitto.ts): a real Mosquitto on 127.0.0.1, anonymous, no persistence, its
 * config in the run's directory.
 */

export interface SoakBroker {
  readonly url: string;
  stop(): Promise<void>;
}

const READY = /mosquitto version \S+ running/;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

export async function startSoakMosquitto(dir: string): Promise<SoakBroker> {
  const configPath = join(dir, 'mosquitto.conf');
  let lastError: unknown;
  // The free port may be taken before mosquitto binds it: try another.
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const lines = [
      `listener ${port} 127.0.0.1`,
      'allow_anonymous true',
      'persistence false',
      'log_dest stderr',
      'log_type error',
      'log_type warning',
      'log_type notice',
      'log_type information',
      ...(process.getuid?.() === 0 ? ['user root'] : []),
      '',
    ];
    await writeFile(configPath, lines.join('\n'), 'utf8');
    const child: Child = await startChild('mosquitto', ['-c', configPath], { name: `mosquitto:${port}` });
    try {
      await child.waitForLine(READY, 10_000);
      return {
        url: `mqtt://127.0.0.1:${port}`,
        async stop() {
          await child.stop(5_000);
        },
      };
    } catch (err) {
      lastError = err;
      await child.stop(1_000);
    }
  }
  throw lastError;
}
