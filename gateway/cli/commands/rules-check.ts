import { BUILTIN, checkRuleFiles, formatRuleIssue } from '../../../rules/dsl/index.js';
import { displayPath, EXIT, parseFlags, UsageError, type Command } from '../command.js';

/**
 * `gridedge rules check FILE…` (SPEC §6, §9): validates rule files the way the gateway loads them
 * at start, printing every problem with its file, rule id, field path and line; exit 2 when any
 * file is invalid. `builtin` names the shipped pack. Files are judged in the order given, after
 * `builtin` when it is not named (every config loads it first unless it leaves it out), so that
 * `override: true` and id clashes with builtin rules are checked as they will be at start-up.
 */
export const rulesCheck: Command = {
  name: 'rules check',
  summary: 'validate rule files (and builtin)',
  usage: 'gridedge rules check FILE… (or builtin)',
  details: [
    '  FILE     a rule file (YAML); `builtin` is the rule pack shipped with gridedge',
    '  Files are checked in the order given, after builtin when builtin is not named,',
    '  so that override: true and duplicate ids are judged as the gateway will judge them.',
  ].join('\n'),
  async run(args, io) {
    const positionals: readonly string[] = parseFlags(args, {}, true).positionals;
    if (positionals.length === 0) throw new UsageError('name at least one rule file (or builtin)');
    const display = (p: string) => displayPath(p, io.cwd);
    const base = positionals.includes(BUILTIN) ? [] : [BUILTIN];
    const checked = await checkRuleFiles(positionals, io.cwd, { display, base });

    if (checked.issues.length > 0) {
      for (const issue of checked.issues) io.stderr(`${formatRuleIssue(issue)}\n`);
      const bad = new Set(checked.issues.map((i) => i.file)).size;
      const n = checked.issues.length;
      io.stderr(`${n} error${n === 1 ? '' : 's'} in ${bad} file${bad === 1 ? '' : 's'}\n`);
      return EXIT.USAGE;
    }
    let total = 0;
    for (const f of checked.files) {
      total += f.rules;
      const overrides = f.overrides > 0 ? ` (${f.overrides} override${f.overrides === 1 ? '' : 's'})` : '';
      io.stdout(`${f.file}: ${f.rules} rule${f.rules === 1 ? '' : 's'}${overrides}\n`);
    }
    const files = checked.files.length;
    io.stdout(`ok: ${total} rule${total === 1 ? '' : 's'} in ${files} file${files === 1 ? '' : 's'}\n`);
    return EXIT.OK;
  },
};
