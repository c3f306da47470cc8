import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { deviceTopics } from '../../../devices/topics.js';
import { connectDevice, endAllClients, publish, startHarness, waitFor, type Harness, type TestDevice } from './harness.js';

// SPEC §3: a TLS listener with a certificate and key from files. The certificate is made here,
// self-signed for 127.0.0.1, with the openssl CLI.
const run = promisify(execFile);
const D: TestDevice = { id: 'PGR-T1', model: 'pager-json', secret: 'tls-secret' };

let h: Harness;
let dir: string;
let ca: Buffer;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'gridedge-broker-tls-'));
  const cert = join(dir, 'gw.pem');
  const key = join(dir, 'gw.key');
  await run('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=gridedge-test',
    '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
  ]);
  ca = await readFile(cert);
  // Paths, as the config gives them.
  h = await startHarness({ devices: [D], tls: { port: 0, cert, key } });
});
afterEach(endAllClients);
afterAll(async () => {
  await h.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('TLS listener', () => {
  it('listens on its own port beside TCP', () => {
    expect(h.tlsPort).toBeGreaterThan(0);
    expect(h.tlsPort).not.toBe(h.port);
  });

  it('a device connects over TLS, verifying the certificate, and its uplink is handled', async () => {
    const c = await connectDevice(h.tlsPort as number, D, { protocol: 'mqtts', ca, rejectUnauthorized: true, servername: 'localhost' });
    await publish(c, deviceTopics.up(D.id), '{"event":"sos"}', 1);
    expect(h.messages.at(-1)?.payload.toString()).toBe('{"event":"sos"}');
  });

  it('authentication applies over TLS too', async () => {
    await expect(connectDevice(h.tlsPort as number, { ...D, secret: 'wrong' }, { protocol: 'mqtts', ca, servername: 'localhost' })).rejects.toMatchObject({ code: 4 });
  });

  it('a client that does not trust the certificate fails the handshake; the broker shrugs it off', async () => {
    await expect(connectDevice(h.tlsPort as number, D, { protocol: 'mqtts', rejectUnauthorized: true })).rejects.toThrow(/self.signed|certificate/i);
    await waitFor(() => h.logs().includes('TLS handshake failed'), 2_000, 'handshake failure logged');
    const c = await connectDevice(h.tlsPort as number, D, { protocol: 'mqtts', ca, servername: 'localhost' });
    expect(c.connected).toBe(true);
  });
});
