import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { registerCleanup } from './cleanup.js';

/** Output kept per process for failure messages: the tail is what explains a crash. */
const MAX_OUTPUT_CHARS = 64 * 1024;

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface SpawnedProcess {
  readonly name: string;
  readonly pid: number;
  /** Captured stdout and stderr, interleaved as they arrived (the last 64 KiB). */
  output(): string;
  /** True once the child has exited. */
  exited(): boolean;
  /** Resolves with the first line (of stdout or stderr) that matches; rejects on exit or timeout. */
  waitForLine(pattern: RegExp | string, timeoutMs?: number): Promise<string>;
  /** Resolves when the child exits; rejects after the timeout (the child keeps running). */
  waitForExit(timeoutMs?: number): Promise<ExitStatus>;
  /** Sends a signal to the PID this harness started (and only that PID). */
  signal(signal: NodeJS.Signals): void;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when the child has exited. Idempotent. */
  stop(graceMs?: number): Promise<ExitStatus>;
}

export interface SpawnOptions {
  /** Name in error messages; defaults to the command's basename. */
  name?: string;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
}

/** Where Debian installs daemons (mosquitto is in /usr/sbin, which a non-root PATH may lack). */
const EXTRA_DIRS = ['/usr/local/sbin', '/usr/sbin', '/sbin'];

/** Finds an executable on PATH (plus the sbin directories); the error says how to get it. */
export function resolveCommand(command: string): string {
  if (command.includes('/')) return command;
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), ...EXTRA_DIRS];
  for (const dir of dirs) {
    const candidate = join(dir, command);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  throw new Error(`${command} not found on PATH or in ${EXTRA_DIRS.join(', ')}; run \`npm run test:deps\` (scripts/test-deps.sh)`);
}

/**
 * Spawns a child with its output captured in memory, registered for cleanup so that a failing test
 * does not leak it. Resolves once the process has been created (rejects if it cannot be).
 */
export async function spawnProcess(command: string, args: readonly string[], options: SpawnOptions = {}): Promise<SpawnedProcess> {
  const file = resolveCommand(command);
  const name = options.name ?? file.slice(file.lastIndexOf('/') + 1);
  const child: ChildProcess = spawn(file, args, {
    cwd: options.cwd,
    env: options.env ?? process.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });

  let output = '';
  let status: ExitStatus | undefined;
  const lineListeners = new Set<(line: string) => void>();
  const exitListeners = new Set<(s: ExitStatus) => void>();

  const append = (chunk: string): void => {
    output += chunk;
    if (output.length > MAX_OUTPUT_CHARS) output = output.slice(output.length - MAX_OUTPUT_CHARS);
  };
  const lineSplitter = (): ((data: Buffer) => void) => {
    let pending = '';
    return (data) => {
      const text = data.toString('utf8');
      append(text);
      pending += text;
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl).replace(/\r$/, '');
        pending = pending.slice(nl + 1);
        for (const listener of [...lineListeners]) listener(line);
      }
    };
  };
  child.stdout?.on('data', lineSplitter());
  child.stderr?.on('data', lineSplitter());

  await new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', (err) => reject(new Error(`cannot start ${name} (${file}): ${err.message}`, { cause: err })));
  });
  const pid = child.pid as number;

  // 'close' (not 'exit'): by then the pipes are drained, so output() holds the last words.
  child.once('close', (code, signal) => {
    status = { code, signal };
    handle.unregister();
    for (const listener of [...exitListeners]) listener(status);
  });

  const describe = (): string => `${name} (pid ${pid})`;
  const withOutput = (message: string): Error => new Error(`${message}\n--- ${describe()} output ---\n${output}`);

  const waitForExit = (timeoutMs = 10_000): Promise<ExitStatus> => {
    if (status) return Promise.resolve(status);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        exitListeners.delete(onExit);
        reject(withOutput(`${describe()} did not exit within ${timeoutMs} ms`));
      }, timeoutMs);
      const onExit = (s: ExitStatus): void => {
        clearTimeout(timer);
        exitListeners.delete(onExit);
        resolve(s);
      };
      exitListeners.add(onExit);
    });
  };

  const signal = (sig: NodeJS.Signals): void => {
    if (status) return;
    try {
      process.kill(pid, sig);
    } catch {
      // Already gone between the check and the kill.
    }
  };

  let stopping: Promise<ExitStatus> | undefined;
  const stop = (graceMs = 5_000): Promise<ExitStatus> => {
    if (status) return Promise.resolve(status);
    stopping ??= (async () => {
      signal('SIGTERM');
      try {
        return await waitForExit(graceMs);
      } catch {
        signal('SIGKILL');
        return await waitForExit(5_000);
      }
    })().finally(() => {
      stopping = undefined;
    });
    return stopping;
  };

  const handle = registerCleanup(
    describe(),
    async () => {
      await stop();
    },
    () => signal('SIGKILL'),
  );

  const proc: SpawnedProcess = {
    name,
    pid,
    output: () => output,
    exited: () => status !== undefined,
    waitForExit,
    signal,
    stop,
    waitForLine(pattern, timeoutMs = 10_000) {
      const matches = (line: string): boolean => (typeof pattern === 'string' ? line.includes(pattern) : pattern.test(line));
      // Lines already seen count too: a fast child may have printed it before we asked.
      const seen = output.split('\n').find((line) => matches(line.replace(/\r$/, '')));
      if (seen !== undefined) return Promise.resolve(seen);
      if (status) return Promise.reject(withOutput(`${describe()} exited (${formatStatus(status)}) before printing ${String(pattern)}`));
      return new Promise((resolve, reject) => {
        const done = (): void => {
          clearTimeout(timer);
          lineListeners.delete(onLine);
          exitListeners.delete(onExit);
        };
        const timer = setTimeout(() => {
          done();
          reject(withOutput(`${describe()} did not print ${String(pattern)} within ${timeoutMs} ms`));
        }, timeoutMs);
        const onLine = (line: string): void => {
          if (!matches(line)) return;
          done();
          resolve(line);
        };
        const onExit = (s: ExitStatus): void => {
          done();
          reject(withOutput(`${describe()} exited (${formatStatus(s)}) before printing ${String(pattern)}`));
        };
        lineListeners.add(onLine);
        exitListeners.add(onExit);
      });
    },
  };
  return proc;
}

export function formatStatus(s: ExitStatus): string {
  return s.signal ? `signal ${s.signal}` : `code ${String(s.code)}`;
}

/** Runs a short command to completion; rejects with its output when it fails. */
export async function runCommand(command: string, args: readonly string[], options: SpawnOptions & { timeoutMs?: number } = {}): Promise<string> {
  const proc = await spawnProcess(command, args, options);
  let s: ExitStatus;
  try {
    s = await proc.waitForExit(options.timeoutMs ?? 10_000);
  } catch (err) {
    await proc.stop(1_000);
    throw err;
  }
  if (s.code !== 0) throw new Error(`${proc.name} ${args.join(' ')} failed (${formatStatus(s)}):\n${proc.output()}`);
  return proc.output();
}
