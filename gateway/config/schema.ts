import { z } from 'zod';
import { GridCodeSchema } from '../../devices/place.js';
import type { DeviceColumn } from '../registry/columns.js';
import { duration } from './duration.js';
import { hashToken, TOKEN_HASH } from './tokens.js';

/**
 * gridedge.yaml, SPEC §11. Every default lives here; the loader only reads, substitutes `${VAR}`,
 * validates with this schema, resolves relative paths and freezes. Unknown keys are refused
 * everywhere: a typo in a life-safety config (`escalaton:`) must not silently fall back to a
 * default. Durations come out in milliseconds; plain HTTP tokens come out as `sha256:` hashes.
 */

/**
 * Cross-field checks run as a transform that returns its input: zod 4 runs `superRefine` even
 * when a field inside failed (the value may then be raw input and crash the check), while a
 * transform runs only on a value whose fields are all valid.
 */
function check<T>(fn: (value: T, ctx: z.RefinementCtx) => void): (value: T, ctx: z.RefinementCtx) => T {
  return (value, ctx) => {
    fn(value, ctx);
    return value;
  };
}

// ---- small field types ---------------------------------------------------------------------

/** Digits-only codes must be quoted: YAML reads `001` as the number 1. */
function digits(n: number, what: string) {
  return z
    .string({
      error: (iss) => (typeof iss.input === 'number' ? `${what} must be a quoted string of ${n} digits (YAML reads unquoted digits as a number)` : undefined),
    })
    .regex(new RegExp(`^\\d{${n}}$`), { message: `${what} must be ${n} digits` });
}

/** `${PORT}` substitutes a string: accept an integer written as digits, too. */
function int(min: number, max: number) {
  return z.preprocess(
    (v) => (typeof v === 'string' && /^\s*\d+\s*$/.test(v) ? Number(v) : v),
    z.number().int().min(min).max(max),
  );
}

function bool() {
  return z.preprocess((v) => (v === 'true' ? true : v === 'false' ? false : v), z.boolean());
}

const text = (max = 256) => z.string().trim().min(1, { message: 'must not be empty' }).max(max);
const filePath = () => z.string().min(1, { message: 'must not be empty' });
const host = () => z.string().trim().min(1, { message: 'host must not be empty' });
/** Port 0 asks the OS for a free port (tests); anything else is a fixed listener. */
const port = () => int(0, 65_535);

const SIZE_UNITS: Record<string, number> = { b: 1, kb: 1e3, mb: 1e6, gb: 1e9, kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3 };

/** Bytes: an integer, or `16KiB`, `512MiB`, `1GB`. */
export function parseByteSize(v: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmg]i?b|b)\s*$/i.exec(v);
  if (!m) return /^\s*\d+\s*$/.test(v) ? Number(v) : undefined;
  const bytes = Number(m[1]) * (SIZE_UNITS[(m[2] as string).toLowerCase()] ?? Number.NaN);
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}

function byteSize(min: number, max: number) {
  return z.preprocess((v) => (typeof v === 'string' ? (parseByteSize(v) ?? v) : v), z.number({ error: 'a size is a number of bytes or 16KiB, 512MiB, 1GiB' }).int().min(min).max(max));
}

function url(protocols: readonly string[]) {
  return z.string().refine(
    (s) => URL.canParse(s) && protocols.includes(new URL(s).protocol.replace(/:$/, '')),
    { message: `must be a URL starting with ${protocols.map((p) => `${p}://`).join(' or ')}` },
  );
}

/** Ids that end up in MQTT topics, CSV cells and log keys: no `/`, `+`, `#`, spaces. */
const Identifier = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$/, { message: 'must be 1–64 of A–Z a–z 0–9 _ . : - and start with a letter or digit' });

// ---- sections ------------------------------------------------------------------------------

const GatewaySchema = z.strictObject({
  id: Identifier,
  dataDir: filePath().default('./data'),
});

const CommunitySchema = z.strictObject({ code: digits(3, 'community code'), name: text(64) });
const GridSchema = z.strictObject({
  code: z.string({ error: (iss) => (typeof iss.input === 'number' ? 'grid code must be a quoted string of 15 digits' : undefined) }).pipe(GridCodeSchema),
  name: text(64),
});

/** SPEC §1: a grid code is the street code + community (3) + grid (3); a configured grid belongs to a configured community. */
export const SiteSchema = z
  .strictObject({
    district: digits(6, 'district code'),
    street: z.strictObject({ code: digits(9, 'street code'), name: text(64) }),
    communities: z.array(CommunitySchema).min(1, { message: 'at least one community is needed' }),
    grids: z.array(GridSchema).min(1, { message: 'at least one grid is needed' }),
  })
  .transform(check((site, ctx) => {
    if (!site.street.code.startsWith(site.district)) {
      ctx.addIssue({ code: 'custom', path: ['street', 'code'], message: `street code must start with the district code ${site.district}` });
    }
    const communities = new Set<string>();
    site.communities.forEach((c, i) => {
      if (communities.has(c.code)) ctx.addIssue({ code: 'custom', path: ['communities', i, 'code'], message: `community ${c.code} is listed twice` });
      communities.add(c.code);
    });
    const grids = new Set<string>();
    site.grids.forEach((g, i) => {
      const path = ['grids', i, 'code'];
      if (grids.has(g.code)) ctx.addIssue({ code: 'custom', path, message: `grid ${g.code} is listed twice` });
      grids.add(g.code);
      if (!g.code.startsWith(site.street.code)) {
        ctx.addIssue({ code: 'custom', path, message: `grid code must start with the street code ${site.street.code}` });
      } else if (!communities.has(g.code.slice(9, 12))) {
        ctx.addIssue({ code: 'custom', path, message: `grid code's community digits ${g.code.slice(9, 12)} are not a configured community (site.communities)` });
      }
    });
  }));

const TlsListenerSchema = z.strictObject({
  /** Defaults to `mqtt.listen.host`. */
  host: host().optional(),
  port: port().default(8883),
  cert: filePath(),
  key: filePath(),
  ca: filePath().optional(),
});

const MqttSchema = z
  .strictObject({
    listen: z.strictObject({ host: host().default('0.0.0.0'), port: port().default(1883) }).prefault({}),
    tls: TlsListenerSchema.optional(),
    maxPayloadBytes: byteSize(64, 256 * 1024 ** 2).default(16_384),
    rateLimit: z.strictObject({ perSecond: int(1, 100_000).default(20), burst: int(1, 1_000_000).default(100) }).prefault({}),
    operators: z
      .array(z.strictObject({ username: Identifier, password: z.string().min(1, { message: 'must not be empty' }) }))
      .default([])
      .transform(check((ops, ctx) => {
        const seen = new Set<string>();
        ops.forEach((o, i) => {
          if (seen.has(o.username)) ctx.addIssue({ code: 'custom', path: [i, 'username'], message: `operator ${o.username} is listed twice` });
          seen.add(o.username);
        });
      })),
  })
  .transform(({ tls, ...rest }) => ({ ...rest, ...(tls ? { tls: { ...tls, host: tls.host ?? rest.listen.host } } : {}) }));

const SerialBusSchema = z
  .strictObject({
    id: Identifier,
    /** Prefer `/dev/serial/by-id/…` (SPEC §4): ttyUSB numbers change across reboots. */
    path: filePath(),
    protocol: z.enum(['modbus-rtu', 'rf-bridge']),
    /** Default by protocol: 9600 for Modbus (SPEC §4.1), 19200 for the RF bridge (SPEC §4.3). */
    baudRate: int(50, 4_000_000).optional(),
    dataBits: z.union([z.literal(5), z.literal(6), z.literal(7), z.literal(8)]).default(8),
    parity: z.enum(['none', 'even', 'odd', 'mark', 'space']).default('none'),
    stopBits: z.union([z.literal(1), z.literal(1.5), z.literal(2)]).default(1),
    // Modbus master timing (SPEC §4.1); an rf-bridge bus only listens and ignores them.
    pollInterval: duration({ min: 10 }).default(1_000),
    timeout: duration({ min: 10, max: 60_000 }).default(300),
    retries: int(0, 10).default(2),
    gap: duration({ min: 0, max: 10_000 }).default(5),
  })
  .transform((bus) => ({ ...bus, baudRate: bus.baudRate ?? (bus.protocol === 'modbus-rtu' ? 9_600 : 19_200) }));

/** A cell of an inline device row: the registry validates the meaning, as it does for the CSV. */
const Cell = z.union([z.string(), z.number().transform(String)]);
const InlineDeviceSchema = z.strictObject({
  id: Cell.optional(),
  model: Cell.optional(),
  grid: Cell.optional(),
  building: Cell.optional(),
  room: Cell.optional(),
  // Secrets and phone numbers are text: YAML reads an unquoted 0123 as the number 123.
  secret: z.string().optional(),
  bus: Cell.optional(),
  address: Cell.optional(),
  rf: Cell.optional(),
  heartbeat: Cell.optional(),
  resident_name: Cell.optional(),
  resident_phone: z.string().optional(),
} satisfies Record<DeviceColumn, z.ZodType>);

const batchSize = () => int(1, 100_000).default(5_000);
const flushInterval = () => duration({ min: 10 }).default(1_000);

const SinkSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('embedded'), retention: duration({ min: 60_000 }).default(30 * 86_400_000) }),
  z
    .strictObject({
      type: z.literal('influxdb1'),
      url: url(['http', 'https']),
      database: text(64),
      retentionPolicy: text(64).optional(),
      username: text(128).optional(),
      password: z.string().optional(),
      createDatabase: bool().default(true),
      batchSize: batchSize(),
      flushInterval: flushInterval(),
    })
    .transform(check((s, ctx) => {
      if ((s.username === undefined) !== (s.password === undefined)) {
        ctx.addIssue({ code: 'custom', path: [s.username === undefined ? 'username' : 'password'], message: 'username and password go together' });
      }
    })),
  z.strictObject({
    type: z.literal('influxdb2'),
    url: url(['http', 'https']),
    org: text(128),
    bucket: text(128),
    token: z.string().min(1, { message: 'must not be empty' }),
    batchSize: batchSize(),
    flushInterval: flushInterval(),
  }),
]);

const UplinkSchema = z.strictObject({
  url: url(['mqtt', 'mqtts', 'tcp', 'ssl', 'ws', 'wss']),
  /** Topic prefix, SPEC §7: `{prefix}/{grid}/incidents/{id}`. */
  prefix: z.string().regex(/^[^/+#\s]+(?:\/[^/+#\s]+)*$/, { message: 'topic prefix: levels separated by /, no leading or trailing /, no + or #' }),
  username: text(128).optional(),
  password: z.string().optional(),
  /** Defaults to `gateway.id`. */
  clientId: text(128).optional(),
  tls: z
    .strictObject({
      ca: filePath().optional(),
      cert: filePath().optional(),
      key: filePath().optional(),
      rejectUnauthorized: bool().default(true),
    })
    .transform(check((t, ctx) => {
      if ((t.cert === undefined) !== (t.key === undefined)) ctx.addIssue({ code: 'custom', path: [t.cert === undefined ? 'cert' : 'key'], message: 'cert and key go together' });
    }))
    .optional(),
});

/** `none`: this severity never escalates (SPEC §7: info). */
const escalationDelay = () =>
  z.union([z.literal('none').transform(() => null), duration({ min: 1_000 })], { error: 'a duration (60s, 5m) or none' });

const EscalationSchema = z.strictObject({
  critical: escalationDelay().default(60_000),
  major: escalationDelay().default(300_000),
  minor: escalationDelay().default(1_800_000),
  info: escalationDelay().default(null),
});

const MIN_TOKEN = 16;
const plainToken = () =>
  z.string().min(MIN_TOKEN, { message: `token must be at least ${MIN_TOKEN} characters (generate one: openssl rand -hex 24)` });
const tokenHash = () => z.string().transform((s) => s.toLowerCase()).pipe(z.string().regex(TOKEN_HASH, { message: 'tokenHash must be "sha256:" and 64 hex digits' }));

const HttpSchema = z
  .strictObject({
    host: host().default('127.0.0.1'),
    port: port().default(8080),
    /** When set, `GET /metrics` needs `Authorization: Bearer <token>` (SPEC §8). */
    metricsToken: plainToken().optional(),
    metricsTokenHash: tokenHash().optional(),
  })
  .transform(check((h, ctx) => {
    if (h.metricsToken !== undefined && h.metricsTokenHash !== undefined) ctx.addIssue({ code: 'custom', path: ['metricsTokenHash'], message: 'give metricsToken or metricsTokenHash, not both' });
  }))
  .transform(({ metricsToken, metricsTokenHash, ...rest }): { host: string; port: number; metricsTokenHash?: string } => {
    const hash = metricsToken !== undefined ? hashToken(metricsToken) : metricsTokenHash;
    return hash === undefined ? rest : { ...rest, metricsTokenHash: hash };
  });

export const ROLES = ['admin', 'dispatcher', 'grid_worker'] as const;
export type Role = (typeof ROLES)[number];

const UserSchema = z
  .strictObject({
    name: text(64),
    role: z.enum(ROLES),
    /** Required for grid workers; admins and dispatchers see every grid of the gateway. */
    grids: z.array(GridCodeSchema).optional(),
    token: plainToken().optional(),
    tokenHash: tokenHash().optional(),
  })
  .transform(check((u, ctx) => {
    if (u.role === 'grid_worker' && (u.grids === undefined || u.grids.length === 0)) {
      ctx.addIssue({ code: 'custom', path: ['grids'], message: 'a grid_worker needs at least one grid' });
    }
    if (u.role !== 'grid_worker' && u.grids !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['grids'], message: `grids apply only to grid_worker (${u.role} sees every grid)` });
    }
    if ((u.token === undefined) === (u.tokenHash === undefined)) {
      ctx.addIssue({ code: 'custom', path: ['token'], message: 'give exactly one of token or tokenHash' });
    }
  }))
  .transform(({ token, tokenHash: hash, grids, ...rest }) => ({
    ...rest,
    grids: grids ?? [],
    // The plain token goes no further than this line.
    tokenHash: token !== undefined ? hashToken(token) : (hash as string),
  }));

// ---- the whole file ------------------------------------------------------------------------

export const GatewayConfigSchema = z
  .strictObject({
    gateway: GatewaySchema,
    site: SiteSchema,
    mqtt: MqttSchema.prefault({}),
    serial: z.array(SerialBusSchema).default([]),
    /** The registry: a CSV file (SPEC §11), or rows inline for small setups and demos. */
    devices: z.union([filePath(), z.array(InlineDeviceSchema)], { error: 'devices is a CSV file path or a list of device rows' }),
    sinks: z.array(SinkSchema).prefault([{ type: 'embedded' }]),
    outbox: z.strictObject({ maxBytes: byteSize(1024 ** 2, 1024 ** 4).default(512 * 1024 ** 2) }).prefault({}),
    /**
     * The local store. `reserveBytes`: a reserve file kept in the data directory and deleted when
     * the disk fills, so that alarms, rule state and incidents can still be committed while
     * telemetry is refused (docs/SPEC-NOTES.md "Disk full"); 0 keeps none. Up to 1 GiB.
     */
    store: z.strictObject({ reserveBytes: byteSize(0, 1024 ** 3).default(16 * 1024 ** 2) }).prefault({}),
    uplink: UplinkSchema.optional(),
    /** `builtin` is the shipped rule pack; other entries are YAML files. */
    rules: z.array(text(1024)).default(['builtin']),
    escalation: EscalationSchema.prefault({}),
    http: HttpSchema.prefault({}),
    users: z.array(UserSchema).default([]),
  })
  .transform(check((cfg, ctx) => {
    unique(cfg.serial.map((b) => b.id), ['serial'], 'id', 'bus id', ctx);
    unique(cfg.serial.map((b) => b.path), ['serial'], 'path', 'serial port', ctx);
    unique(cfg.rules, ['rules'], undefined, 'rule file', ctx);
    unique(cfg.users.map((u) => u.name), ['users'], 'name', 'user', ctx);
    // Two users with one token could not be told apart: the second would get the first's rights.
    cfg.users.forEach((u, i) => {
      if (cfg.users.findIndex((o) => o.tokenHash === u.tokenHash) < i) ctx.addIssue({ code: 'custom', path: ['users', i, 'token'], message: 'another user has the same token' });
    });
    if (cfg.sinks.filter((s) => s.type === 'embedded').length > 1) ctx.addIssue({ code: 'custom', path: ['sinks'], message: 'at most one embedded sink' });

    const configured = new Set(cfg.site.grids.map((g) => g.code));
    cfg.users.forEach((u, i) =>
      u.grids.forEach((g, j) => {
        if (!configured.has(g)) ctx.addIssue({ code: 'custom', path: ['users', i, 'grids', j], message: `grid ${g} is not configured in site.grids` });
      }),
    );

    const listeners: { path: (string | number)[]; host: string; port: number }[] = [
      { path: ['mqtt', 'listen', 'port'], ...cfg.mqtt.listen },
      { path: ['http', 'port'], host: cfg.http.host, port: cfg.http.port },
    ];
    if (cfg.mqtt.tls) listeners.push({ path: ['mqtt', 'tls', 'port'], host: cfg.mqtt.tls.host, port: cfg.mqtt.tls.port });
    listeners.forEach((l, i) => {
      const clash = listeners.slice(0, i).find((o) => o.port === l.port && l.port !== 0 && hostsOverlap(o.host, l.host));
      if (clash) ctx.addIssue({ code: 'custom', path: l.path, message: `port ${l.port} is already used by ${clash.path.join('.')}` });
    });
  }))
  .transform((cfg) => (cfg.uplink ? { ...cfg, uplink: { ...cfg.uplink, clientId: cfg.uplink.clientId ?? cfg.gateway.id } } : cfg));

function hostsOverlap(a: string, b: string): boolean {
  const any = (h: string) => h === '0.0.0.0' || h === '::' || h === '';
  return a === b || any(a) || any(b);
}

function unique(values: readonly string[], base: (string | number)[], key: string | undefined, what: string, ctx: z.RefinementCtx): void {
  const seen = new Set<string>();
  values.forEach((v, i) => {
    if (seen.has(v)) ctx.addIssue({ code: 'custom', path: key === undefined ? [...base, i] : [...base, i, key], message: `${what} ${v} is listed twice` });
    seen.add(v);
  });
}

export type GatewayConfigInput = z.input<typeof GatewayConfigSchema>;
export type GatewayConfig = z.output<typeof GatewayConfigSchema>;
export type SiteConfig = GatewayConfig['site'];
export type SerialBusConfig = GatewayConfig['serial'][number];
export type SinkConfig = GatewayConfig['sinks'][number];
export type UserConfig = GatewayConfig['users'][number];
export type InlineDeviceRow = Extract<GatewayConfig['devices'], readonly unknown[]>[number];
