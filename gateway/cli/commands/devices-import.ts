import { resolve } from 'node:path';
import { ConfigError } from '../../config/errors.js';
import { importDevices } from '../../registry/import.js';
import { registryContext } from '../../registry/registry.js';
import { CONFIG_FLAG, EXIT, loadCliConfig, parseFlags, printIssues, UsageError, type Command } from '../command.js';

/** `gridedge devices import FILE.csv [-c FILE]` (SPEC §11): all rows valid, or nothing written. */
export const devicesImport: Command = {
  name: 'devices import',
  summary: 'validate a device CSV and merge it into the registry (secrets hashed)',
  usage: 'gridedge devices import FILE.csv [-c FILE]',
  details: [
    '  -c, --config FILE   the config file (default ./gridedge.yaml); its `devices:` names the registry',
    '',
    'Every row of FILE.csv is checked; if any is wrong, each is reported with its line and nothing',
    'is written. Otherwise rows replace devices with the same id and the others are added; plain',
    'secrets are stored as scrypt hashes. Importing the registry file onto itself hashes any plain',
    'secret typed into it by hand.',
  ].join('\n'),
  async run(args, io) {
    const { values, positionals } = parseFlags(args, CONFIG_FLAG, true);
    if (positionals.length !== 1) throw new UsageError(positionals.length === 0 ? 'name the CSV file to import' : 'import takes one CSV file');
    const { config, shown, display } = await loadCliConfig(values.config, io);
    if (typeof config.devices !== 'string') {
      throw new ConfigError([{ code: 'REG_ERR_INLINE', file: shown, path: 'devices', message: 'the devices are listed inline; point devices: at a CSV file to import into' }]);
    }
    const newFile = resolve(io.cwd, positionals[0] as string);
    const result = await importDevices({
      newFile,
      registryFile: config.devices,
      ctx: registryContext(config, await io.models()),
      display,
      ...(io.hash ? { hash: io.hash } : {}),
    });
    if (!result.ok) {
      printIssues(io, result.issues);
      io.stderr(`nothing was written: ${result.issues.length} problem${result.issues.length === 1 ? '' : 's'}\n`);
      return EXIT.USAGE;
    }
    const registry = display(config.devices);
    const hashed = `${result.hashed} secret${result.hashed === 1 ? '' : 's'} hashed`;
    const summary =
      newFile === config.devices
        ? `rewrote ${registry}: ${hashed}`
        : `imported ${display(newFile)} into ${registry}: ${result.added} added, ${result.replaced} replaced, ${hashed}`;
    io.stdout(`${summary}; ${result.total} device${result.total === 1 ? '' : 's'} in the registry\n`);
    if (result.newFileHasPlainSecrets) io.stderr(`warning: ${display(newFile)} still holds plain secrets; delete it or keep it somewhere safe\n`);
    return EXIT.OK;
  },
};
