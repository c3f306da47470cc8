import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { lstat } from 'node:fs/promises';
import { delimiter, join } from 'node:path';

/** Whether an executable of that name is on PATH. */
export function onPath(name: string, path = process.env.PATH ?? ''): boolean {
  return path.split(delimiter).some((dir) => {
    if (dir === '') return false;
    try {
      accessSync(join(dir, name), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

export interface PtyPair {
  /** The gateway's end. */
  readonly a: string;
  /** The simulator's end. */
  readonly b: string;
  readonly pid: number;
  /** SIGTERM to this socat (SIGKILL if it lingers); resolves once it exited. */
  stop(): Promise<void>;
}

const START_TIMEOUT_MS = 5_000;

/**
 * A connected pair of pseudo-terminals, `socat -d -d pty,raw,echo=0,link=A pty,raw,echo=0,link=B`,
 * standing in for a USB serial adapter and the device behind it. Resolves once socat reports the
 * transfer loop and both links exist.
 */
export async function createPtyPair(a: string, b: string): Promise<PtyPair> {
  // Its own process group: a Ctrl-C in the terminal must reach the demo, which then stops the
  // gateway before this socat (by PID), not kill the serial links under a running gateway.
  const child = spawn('socat', ['-d', '-d', `pty,raw,echo=0,link=${a}`, `pty,raw,echo=0,link=${b}`], { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
  let output = '';
  let exited = false;
  const exit = new Promise<void>((resolve) => {
    child.once('exit', () => {
      exited = true;
      resolve();
    });
    child.once('error', (err) => {
      output += `${err.message}\n`;
      exited = true;
      resolve();
    });
  });
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    if (output.length < 16_384) output += chunk;
  });
  const stop = async (): Promise<void> => {
    if (exited) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 2_000);
    await exit;
    clearTimeout(timer);
  };
  try {
    await ready(child, () => output, () => exited, [a, b]);
  } catch (err) {
    await stop();
    throw err;
  }
  return { a, b, pid: child.pid ?? 0, stop };
}

async function ready(child: ChildProcess, output: () => string, exited: () => boolean, links: readonly string[]): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (output().includes('starting data transfer loop')) {
      const present = await Promise.all(links.map((l) => lstat(l).then((s) => s.isSymbolicLink(), () => false)));
      if (present.every(Boolean)) return;
    }
    if (exited() || Date.now() > deadline) {
      throw new Error(`socat (pid ${child.pid ?? '?'}) did not create ${links.join(' and ')}: ${output().trim() || 'no output'}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}
