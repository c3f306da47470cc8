import { createGateway } from '../../app.js';
import { ConfigError } from '../../config/errors.js';
import { createLogger } from '../../logger.js';
import { loadRegistry, registryContext } from '../../registry/registry.js';
import { CONFIG_FLAG, EXIT, loadCliConfig, parseFlags, printWarnings, UsageError, type Command } from '../command.js';

const LEVELS = new Set(['fatal', 'error', 'warn', 'info', 'debug', 'trace']);

/**
 * `gridedge start [-c FILE]` (SPEC §9): the gateway, until SIGINT or SIGTERM. Logs are JSON lines
 * (pino) on stdout; pipe them through `pino-pretty` to read them by eye.
 */
export const start: Command = {
  name: 'start',
  summary: 'run the gateway',
  usage: 'gridedge start [-c FILE] [--log-level info]',
  details: [
    '  -c, --config FILE     the config file (default ./gridedge.yaml)',
    '      --log-level LVL   fatal, error, warn, info (default), debug (every reading), trace',
  ].join('\n'),
  async run(args, io) {
    const { values } = parseFlags(args, { ...CONFIG_FLAG, 'log-level': { type: 'string', default: 'info' } }, false);
    const level = values['log-level'];
    if (!LEVELS.has(level)) throw new UsageError(`--log-level must be one of ${[...LEVELS].join(', ')}`);
    const { config, shown, display } = await loadCliConfig(values.config, io);
    const models = await io.models();
    const load = () =>
      loadRegistry(config.devices, registryContext(config, models), {
        configFile: shown,
        display,
        ...(io.hash ? { hash: io.hash } : {}),
      });
    const loaded = await load();
    if (!loaded.ok) throw new ConfigError(loaded.issues);
    printWarnings(io, loaded.warnings);

    const logger = createLogger({ level });
    // SPEC §11: the registry file is read at start and again whenever it changes.
    const registrySource = typeof config.devices === 'string' ? { file: config.devices, load } : undefined;
    const gateway = createGateway({ config, registry: loaded.registry, logger, ...(registrySource ? { registrySource } : {}) });
    await gateway.start();
    // The handlers go in before the start line: a supervisor may signal as soon as it reads it.
    const stopRequested = new Promise<void>((resolve) => {
      const stop = (signal: NodeJS.Signals) => {
        logger.info({ signal }, 'stopping');
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
        resolve();
      };
      process.on('SIGINT', stop);
      process.on('SIGTERM', stop);
    });
    io.stdout(
      `gridedge ${config.gateway.id}: MQTT on ${config.mqtt.listen.host}:${gateway.broker.ports().tcp}, HTTP on ${config.http.host}:${gateway.httpPort()}, ${loaded.registry.size} devices, data in ${display(config.gateway.dataDir)}\n`,
    );

    await stopRequested;
    await gateway.stop();
    return EXIT.OK;
  },
};
