import { access, constants } from 'node:fs/promises';
import { ConfigError, describeFsError, type ConfigIssue } from '../../config/errors.js';
import type { GatewayConfig } from '../../config/schema.js';
import { countByModel, plainSecretRows, plainSecretWarning, readDeviceSource, registryContext, validateDeviceRows } from '../../registry/registry.js';
import { CONFIG_FLAG, EXIT, loadCliConfig, parseFlags, printWarnings, type Command } from '../command.js';

/**
 * `gridedge config check [-c FILE]` (SPEC §9): everything the gateway would check at start-up
 * short of opening ports — the config, the device registry, and that the files it names exist.
 * It does not hash plain secrets (that is slow and changes nothing on disk); it warns about them.
 */
export const configCheck: Command = {
  name: 'config check',
  summary: 'validate gridedge.yaml and its device registry',
  usage: 'gridedge config check [-c FILE]',
  details: '  -c, --config FILE   the config file (default ./gridedge.yaml)',
  async run(args, io) {
    const { values } = parseFlags(args, CONFIG_FLAG, false);
    const { config, shown, display } = await loadCliConfig(values.config, io);

    const missing = await missingFiles(config, shown, display);
    const models = await io.models();
    const source = await readDeviceSource(config.devices, { configFile: shown, display });
    const checked = validateDeviceRows(source.rows, registryContext(config, models));
    const issues = [...missing, ...source.issues, ...checked.issues];
    if (issues.length > 0) throw new ConfigError(issues);

    const plain = plainSecretRows(checked.rows);
    if (plain.length > 0 && typeof config.devices === 'string') printWarnings(io, [plainSecretWarning(plain, display(config.devices))]);

    const counts = countByModel(checked.rows.map((r) => r.record));
    const perModel = [...models.keys(), ...counts.keys()]
      .filter((m, i, all) => all.indexOf(m) === i && counts.has(m))
      .map((m) => `${m} ${counts.get(m)}`)
      .join(', ');
    const n = checked.rows.length;
    const grids = config.site.grids.length;
    io.stdout(`ok: ${config.gateway.id}, ${grids} grid${grids === 1 ? '' : 's'}, ${n} device${n === 1 ? '' : 's'}${perModel ? ` (${perModel})` : ''}\n`);
    return EXIT.OK;
  },
};

/**
 * Files the gateway will open at start. Rule files are only checked for existence here; their
 * content is the rules loader's to validate (`gridedge rules check`).
 */
async function missingFiles(config: GatewayConfig, shown: string, display: (p: string) => string): Promise<ConfigIssue[]> {
  const files: [string, string | undefined][] = [
    ['mqtt.tls.cert', config.mqtt.tls?.cert],
    ['mqtt.tls.key', config.mqtt.tls?.key],
    ['mqtt.tls.ca', config.mqtt.tls?.ca],
    ['uplink.tls.ca', config.uplink?.tls?.ca],
    ['uplink.tls.cert', config.uplink?.tls?.cert],
    ['uplink.tls.key', config.uplink?.tls?.key],
    ...config.rules.map((r, i): [string, string | undefined] => [`rules[${i}]`, r === 'builtin' ? undefined : r]),
  ];
  const issues: ConfigIssue[] = [];
  for (const [path, file] of files) {
    if (file === undefined) continue;
    try {
      await access(file, constants.R_OK);
    } catch (err) {
      issues.push({ code: 'CFG_ERR_INVALID', file: shown, path, message: `${describeFsError(err)}: ${display(file)}` });
    }
  }
  return issues;
}
