import type { DeviceRecord } from '../../../devices/device-record.js';
import { GridCodeSchema } from '../../../devices/place.js';
import { ConfigError } from '../../config/errors.js';
import { readDeviceStates } from '../../../ingest/store/index.js';
import { storePath } from '../../data-files.js';
import { readDeviceSource, registryContext, validateDeviceRows } from '../../registry/registry.js';
import { CONFIG_FLAG, EXIT, loadCliConfig, parseFlags, UsageError, type Command } from '../command.js';

/**
 * `gridedge devices list [-c FILE] [--grid CODE]` (SPEC §9). Prints where each device is and how
 * it is reached — never its secret (hash or not) nor the resident's name or phone: a terminal
 * is shared, scrolled back and screenshotted (SPEC §8).
 */
export const devicesList: Command = {
  name: 'devices list',
  summary: 'list the registered devices (no secrets, no residents’ data)',
  usage: 'gridedge devices list [-c FILE] [--grid CODE]',
  details: ['  -c, --config FILE   the config file (default ./gridedge.yaml)', '      --grid CODE     only the devices of one grid (15 digits)'].join('\n'),
  async run(args, io) {
    const { values } = parseFlags(args, { ...CONFIG_FLAG, grid: { type: 'string' } }, false);
    if (values.grid !== undefined && !GridCodeSchema.safeParse(values.grid).success) throw new UsageError('--grid needs a grid code of 15 digits');
    const { config, shown, display } = await loadCliConfig(values.config, io);
    const source = await readDeviceSource(config.devices, { configFile: shown, display });
    const checked = validateDeviceRows(source.rows, registryContext(config, await io.models()));
    const issues = [...source.issues, ...checked.issues];
    if (issues.length > 0) throw new ConfigError(issues);

    const records = checked.rows.map((r) => r.record).filter((r) => values.grid === undefined || r.place.grid === values.grid);
    // Last seen from the gateway's store, read-only (it may be running): commissioning shows at a
    // glance who has never reported (docs/INSTALL.md).
    const states = readDeviceStates(storePath(config.gateway.dataDir));
    const lastSeen = new Map((states ?? []).map((s) => [s.deviceId, s.lastSeen]));
    const seen = (r: DeviceRecord) => {
      const at = lastSeen.get(r.id);
      return at === undefined ? 'never' : new Date(at).toISOString().replace(/\.\d{3}Z$/, 'Z');
    };
    const header = ['ID', 'MODEL', 'GRID', 'BUILDING', 'ROOM', 'BUS/ADDRESS/RF', ...(states ? ['LAST SEEN'] : [])];
    io.stdout(formatTable(header, records.map((r) => [...row(r), ...(states ? [seen(r)] : [])])));
    if (!states) io.stderr(`no store in ${display(config.gateway.dataDir)} yet: last-seen times appear once the gateway has run\n`);
    return EXIT.OK;
  },
};

/** The only fields that reach the terminal. */
function row(r: DeviceRecord): string[] {
  const link = r.bus === undefined ? 'mqtt' : `${r.bus}/${r.address ?? r.rf ?? ''}`;
  return [r.id, r.model, r.place.grid, r.place.building, r.place.room, link];
}

export function formatTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(displayWidth(h), ...rows.map((r) => displayWidth(r[i] ?? ''))));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c + ' '.repeat((widths[i] ?? 0) - displayWidth(c))))
      .join('  ')
      .trimEnd() + '\n';
  return [header, ...rows].map(line).join('');
}

/** Terminal columns: CJK characters (地下一层, 第2网格) take two, so columns stay aligned. */
export function displayWidth(text: string): number {
  let width = 0;
  for (const ch of text) {
    const cp = ch.codePointAt(0) ?? 0;
    const wide =
      (cp >= 0x1100 && cp <= 0x115f) ||
      (cp >= 0x2e80 && cp <= 0xa4cf) ||
      (cp >= 0xac00 && cp <= 0xd7a3) ||
      (cp >= 0xf900 && cp <= 0xfaff) ||
      (cp >= 0xfe30 && cp <= 0xfe4f) ||
      (cp >= 0xff00 && cp <= 0xff60) ||
      (cp >= 0xffe0 && cp <= 0xffe6) ||
      (cp >= 0x20000 && cp <= 0x3fffd);
    width += wide ? 2 : 1;
  }
  return width;
}
