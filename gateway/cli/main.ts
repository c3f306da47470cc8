import { isConfigError } from '../config/errors.js';
import type { ModelLookup } from '../registry/registry.js';
import { EXIT, printIssues, UsageError, type CliIo, type Command } from './command.js';
import { COMMANDS } from './commands/index.js';

/**
 * The `gridedge` command line (SPEC §9). bin/gridedge.js calls `run(process.argv.slice(2))` and
 * exits with what it returns: 0 ok, 1 runtime failure, 2 bad usage or invalid config. Tests call
 * it in-process with their own writers.
 */
export async function run(argv: readonly string[], io: Partial<CliIo> = {}): Promise<number> {
  const full: CliIo = {
    stdout: io.stdout ?? ((t) => void process.stdout.write(t)),
    stderr: io.stderr ?? ((t) => void process.stderr.write(t)),
    cwd: io.cwd ?? process.cwd(),
    models: io.models ?? loadCatalogue,
    ...(io.env ? { env: io.env } : {}),
    ...(io.hash ? { hash: io.hash } : {}),
  };
  return dispatch(argv, full, COMMANDS);
}

/** Loaded on demand, so `--help` works even on a tree whose codecs are broken. */
async function loadCatalogue(): Promise<ModelLookup> {
  const { MODELS } = await import('../../devices/catalogue.js');
  return MODELS;
}

const HELP_FLAGS = new Set(['-h', '--help']);

export async function dispatch(argv: readonly string[], io: CliIo, commands: readonly Command[]): Promise<number> {
  const [first, ...rest] = argv;
  if (first === undefined) {
    io.stderr(usage(commands));
    return EXIT.USAGE;
  }
  if (HELP_FLAGS.has(first) || first === 'help') {
    const topic = first === 'help' ? rest : [];
    if (topic.length === 0) {
      io.stdout(usage(commands));
      return EXIT.OK;
    }
    const found = match(topic, commands);
    if (!found || found.args.length > 0) return unknown(topic, io, commands);
    io.stdout(commandHelp(found.command));
    return EXIT.OK;
  }

  const found = match(argv, commands);
  if (!found) return unknown(argv, io, commands);
  const { command, args } = found;
  if (args.some((a) => HELP_FLAGS.has(a))) {
    io.stdout(commandHelp(command));
    return EXIT.OK;
  }
  try {
    return await command.run(args, io);
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr(`gridedge ${command.name}: ${err.message}\nusage: ${command.usage}\n`);
      return EXIT.USAGE;
    }
    if (isConfigError(err)) {
      printIssues(io, err.issues);
      return EXIT.USAGE;
    }
    io.stderr(`gridedge ${command.name}: ${err instanceof Error ? err.message : String(err)}\n`);
    return EXIT.FAILURE;
  }
}

/** The command whose words start argv; the longest match wins, so `rules check` beats a `rules`. */
function match(argv: readonly string[], commands: readonly Command[]): { command: Command; args: readonly string[] } | undefined {
  let best: { command: Command; args: readonly string[] } | undefined;
  for (const command of commands) {
    const words = command.name.split(' ');
    if (words.every((w, i) => argv[i] === w) && (!best || words.length > best.command.name.split(' ').length)) {
      best = { command, args: argv.slice(words.length) };
    }
  }
  return best;
}

function unknown(argv: readonly string[], io: CliIo, commands: readonly Command[]): number {
  const [first = '', second] = argv;
  const group = commands.filter((c) => c.name.split(' ')[0] === first);
  if (group.length > 0) {
    const what = second === undefined ? `needs one of: ${group.map((c) => c.name.split(' ').slice(1).join(' ')).join(', ')}` : `unknown command ${JSON.stringify(second)}`;
    io.stderr(`gridedge ${first}: ${what}\n\n${usage(commands)}`);
  } else {
    io.stderr(`gridedge: unknown ${first.startsWith('-') ? 'option' : 'command'} ${JSON.stringify(first)}\n\n${usage(commands)}`);
  }
  return EXIT.USAGE;
}

export function usage(commands: readonly Command[]): string {
  const width = Math.max(...commands.map((c) => c.name.length), 'help [COMMAND]'.length);
  const lines = [
    'gridedge — edge gateway for community safety grids',
    '',
    'usage: gridedge <command> [options]',
    '',
    'commands:',
    ...commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    `  ${'help [COMMAND]'.padEnd(width)}  this help, or one command's`,
    '',
    'exit codes: 0 ok, 1 runtime failure, 2 bad usage or invalid config',
  ];
  return lines.join('\n') + '\n';
}

function commandHelp(command: Command): string {
  return `usage: ${command.usage}\n\n${command.summary}\n${command.details ? `\n${command.details}\n` : ''}`;
}
