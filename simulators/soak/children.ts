import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

/*
 * Child processes of a soak run (the gateway, Mosquitto), started on 127.0.0.1 and stopped by
 * the PID this module started, never by name. tests/helpers/process.ts does the same for tests;
 * simulators/ may not import tests/, and the soak script runs from dist/ without vitest.
 */

/** Output kept per child for error messages: the tail is what explains a crash. */
const MAX_OUTPUT_CHARS = 32 * 1024;
/** Where Debian installs daemons (mosquitto is in /usr/sbin, which a non-root PATH may lack). */
const EXTRA_DIRS = ['/usr/local/sbin', '/usr/sbin', '/sbin'];

export interface Child {
  readonly name: string;
  readonly pid: number;
  output(): string;
  exited(): boolean;
  /** `SIGKILL`, `code 0`…; `running` while it runs. */
  exitStatus(): string;
  /** Resolves with the first output line matching `pattern`; rejects on exit or timeout. */
  waitForLine(pattern: RegExp, timeoutMs: number): Promise<string>;
  /** Resolves with the exit code (null when killed by a signal); rejects after `timeoutMs`. */
  waitForExit(timeoutMs: number): Promise<number | null>;
  /** SIGKILL to this PID; resolves once it is gone (the OS has released its files and ports). */
  kill9(): Promise<void>;
  /** SIGTERM, SIGKILL after `graceMs`; resolves with the exit code (null when killed). */
  stop(graceMs?: number): Promise<number | null>;
}

const started = new Set<ChildProcess>();

/** Last resort for a caller that gives up half-way (a test timeout): SIGKILL to every PID started here. */
export function killStartedChildren(): void {
  for (const child of started) {
    try {
      if (child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
}

export function resolveCommand(command: string): string {
  if (command.includes('/')) return command;
  for (const dir of [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), ...EXTRA_DIRS]) {
    const candidate = join(dir, command);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  throw new Error(`${command} not found on PATH or in ${EXTRA_DIRS.join(', ')} (scripts/test-deps.sh installs it)`);
}

export async function startChild(command: string, args: readonly string[], opts: { name: string; cwd?: string }): Promise<Child> {
  const file = resolveCommand(command);
  const child = spawn(file, args, { cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  const lineListeners = new Set<(line: string) => void>();
  const exitListeners = new Set<() => void>();
  let pending = '';
  const onData = (data: Buffer): void => {
    const text = data.toString('utf8');
    output += text;
    if (output.length > MAX_OUTPUT_CHARS) output = output.slice(-MAX_OUTPUT_CHARS);
    pending += text;
    let nl: number;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      for (const l of [...lineListeners]) l(line);
    }
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', (err) => reject(new Error(`cannot start ${opts.name} (${file}): ${err.message}`)));
  });
  started.add(child);
  const pid = child.pid as number;
  child.once('close', (code, signal) => {
    exit = { code, signal };
    started.delete(child);
    for (const l of [...exitListeners]) l();
  });
  const describe = `${opts.name} (pid ${pid})`;
  const fail = (message: string): Error => new Error(`${describe} ${message}\n--- output ---\n${output}`);

  const waitForExit = (timeoutMs: number): Promise<boolean> =>
    exit
      ? Promise.resolve(true)
      : new Promise((resolve) => {
          const timer = setTimeout(() => {
            exitListeners.delete(done);
            resolve(false);
          }, timeoutMs);
          const done = (): void => {
            clearTimeout(timer);
            exitListeners.delete(done);
            resolve(true);
          };
          exitListeners.add(done);
        });
  const signal = (sig: NodeJS.Signals): void => {
    if (exit) return;
    try {
      process.kill(pid, sig);
    } catch {
      // exited between the check and the kill
    }
  };

  return {
    name: opts.name,
    pid,
    output: () => output,
    exited: () => exit !== undefined,
    exitStatus: () => (exit === undefined ? 'running' : (exit.signal ?? `code ${String(exit.code)}`)),
    async waitForExit(timeoutMs) {
      if (!(await waitForExit(timeoutMs))) throw fail(`did not exit within ${timeoutMs} ms`);
      return exit?.code ?? null;
    },
    waitForLine(pattern, timeoutMs) {
      const seen = output.split('\n').find((l) => pattern.test(l));
      if (seen !== undefined) return Promise.resolve(seen);
      if (exit) return Promise.reject(fail(`exited (code ${String(exit.code)}) before printing ${String(pattern)}`));
      return new Promise((resolve, reject) => {
        const done = (): void => {
          clearTimeout(timer);
          lineListeners.delete(onLine);
          exitListeners.delete(onExit);
        };
        const timer = setTimeout(() => {
          done();
          reject(fail(`did not print ${String(pattern)} within ${timeoutMs} ms`));
        }, timeoutMs);
        const onLine = (line: string): void => {
          if (!pattern.test(line)) return;
          done();
          resolve(line);
        };
        const onExit = (): void => {
          done();
          reject(fail(`exited (code ${String(exit?.code)}) before printing ${String(pattern)}`));
        };
        lineListeners.add(onLine);
        exitListeners.add(onExit);
      });
    },
    async kill9() {
      signal('SIGKILL');
      if (!(await waitForExit(10_000))) throw fail('is still running 10 s after SIGKILL');
    },
    async stop(graceMs = 10_000) {
      signal('SIGTERM');
      if (!(await waitForExit(graceMs))) {
        signal('SIGKILL');
        await waitForExit(5_000);
      }
      return exit?.code ?? null;
    },
  };
}
