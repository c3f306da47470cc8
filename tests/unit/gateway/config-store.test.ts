import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../../../gateway/config/errors.js';
import { loadConfig } from '../../../gateway/config/load.js';

/** `store.reserveBytes` (SPEC-NOTES "Disk full"): the disk guard's reserve file. */

const MINIMAL = `gateway: { id: gw-test }
site:
  district: "110101"
  street: { code: "110101013", name: 东花市街道 }
  communities: [{ code: "001", name: 北里社区 }]
  grids: [{ code: "110101013001002", name: 第2网格 }]
devices: ./devices.csv
`;

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'gridedge-config-store-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function load(yaml: string) {
  const file = join(dir, 'gridedge.yaml');
  await writeFile(file, yaml);
  return loadConfig(file, { env: {}, displayName: 'gridedge.yaml' });
}

describe('store.reserveBytes', () => {
  it('defaults to 16 MiB', async () => {
    expect((await load(MINIMAL)).store).toEqual({ reserveBytes: 16 * 1024 * 1024 });
  });

  it.each([
    ['64MiB', 64 * 1024 * 1024],
    ['0', 0],
    [4096, 4096],
  ])('takes %s', async (value, bytes) => {
    expect((await load(`${MINIMAL}store: { reserveBytes: ${JSON.stringify(value)} }\n`)).store.reserveBytes).toBe(bytes);
  });

  it.each(['-1', '2GiB', '"lots"', '1.5'])('refuses %s with a message naming the field', async (value) => {
    const err = await load(`${MINIMAL}store: { reserveBytes: ${value} }\n`).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).message).toMatch(/^gridedge\.yaml: store\.reserveBytes: /);
  });

  it('refuses an unknown key under store', async () => {
    const err = await load(`${MINIMAL}store: { reserve: 1MiB }\n`).catch((e: unknown) => e);
    expect((err as ConfigError).message).toMatch(/store/);
  });
});
