import { readFile } from 'node:fs/promises';
import { connect as tcpConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { deviceTopics } from '../../../devices/topics.js';
import { connectDevice, endAllClients, publish, startHarness, waitFor, type Harness, type TestDevice } from '../broker/harness.js';
import { makePki, type TestPki } from './site.js';

// Device TLS (SPEC §3), what tests/integration/broker/tls.test.ts does not cover: a certificate
// signed by a CA the device trusts, a device that trusts another CA, plain MQTT sent to the TLS
// port, TLS sent to the plain port, and protocol versions below TLS 1.2. Each refusal is clean:
// the client gets an error, the broker logs it and goes on serving.

const D: TestDevice = { id: 'PGR-TLS-1', model: 'pager-json', secret: 'tls-secret-pager' };
const MQTT_CONNECT = Buffer.from('101500044d5154540402003c00095047522d544c532d31', 'hex'); // CONNECT, client id PGR-TLS-1, no credentials

let pki: TestPki;
let h: Harness;
let ca: Buffer;
let otherCa: Buffer;

beforeAll(async () => {
  pki = await makePki();
  ca = await readFile(pki.ca);
  otherCa = await readFile(pki.otherCa);
  h = await startHarness({ devices: [D], tls: { port: 0, cert: pki.serverCert, key: pki.serverKey } });
});
afterEach(endAllClients);
afterAll(() => h.stop());

const tlsPort = (): number => h.tlsPort as number;

/** Whatever a raw socket receives until the peer closes it (or `timeoutMs`). */
function rawExchange(open: () => Socket, send: Buffer, timeoutMs = 10_000): Promise<{ data: Buffer; error?: string; closed: boolean }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let error: string | undefined;
    const s = open();
    const timer = setTimeout(() => {
      s.destroy();
      resolve({ data: Buffer.concat(chunks), ...(error ? { error } : {}), closed: false });
    }, timeoutMs);
    s.on('connect', () => s.write(send));
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('error', (e) => (error = e.message));
    s.on('close', () => {
      clearTimeout(timer);
      resolve({ data: Buffer.concat(chunks), ...(error ? { error } : {}), closed: true });
    });
  });
}

describe('device TLS', () => {
  it('a device that trusts the CA connects (certificate checked against 127.0.0.1) and its SOS is handled', async () => {
    const c = await connectDevice(tlsPort(), D, { protocol: 'mqtts', ca, rejectUnauthorized: true });
    await publish(c, deviceTopics.up(D.id), '{"event":"sos"}', 1);
    expect(h.messages.at(-1)?.payload.toString()).toBe('{"event":"sos"}');
  });

  it('a device that trusts another CA refuses the gateway (no credentials are sent)', async () => {
    const before = h.verifyCalls.get(D.id) ?? 0;
    await expect(connectDevice(tlsPort(), D, { protocol: 'mqtts', ca: otherCa, rejectUnauthorized: true })).rejects.toThrow(/certificate|self.signed|issuer/i);
    expect(h.verifyCalls.get(D.id) ?? 0).toBe(before);
    await waitFor(() => h.logs().includes('TLS handshake failed'), 10_000, 'handshake failure logged');
  });

  it('plain MQTT sent to the TLS port gets no CONNACK: the connection is closed, the broker goes on', async () => {
    const before = h.verifyCalls.get(D.id) ?? 0;
    const r = await rawExchange(() => tcpConnect({ host: '127.0.0.1', port: tlsPort() }), MQTT_CONNECT);
    expect(r.closed).toBe(true);
    expect(r.data.includes(Buffer.from([0x20, 0x02]))).toBe(false); // no CONNACK
    expect(h.verifyCalls.get(D.id) ?? 0).toBe(before);
    const c = await connectDevice(tlsPort(), D, { protocol: 'mqtts', ca });
    expect(c.connected).toBe(true);
  });

  it('a TLS handshake sent to the plain port fails on the client, the broker goes on', async () => {
    await expect(connectDevice(h.port, D, { protocol: 'mqtts', ca })).rejects.toThrow();
    const c = await connectDevice(h.port, D);
    expect(c.connected).toBe(true);
  });

  it('TLS 1.1 and older are refused (minVersion TLSv1.2)', async () => {
    const r = await new Promise<{ ok: boolean; error?: string }>((resolve) => {
      const s = tlsConnect({ host: '127.0.0.1', port: tlsPort(), ca, minVersion: 'TLSv1', maxVersion: 'TLSv1.1', servername: 'localhost' });
      s.once('secureConnect', () => {
        s.destroy();
        resolve({ ok: true });
      });
      s.once('error', (e: Error) => resolve({ ok: false, error: e.message }));
    });
    expect(r.ok).toBe(false);
    expect(r.error).toMatch(/version|protocol|alert|disabled|no protocols/i);
  });

  it('TLS 1.2 and 1.3 are accepted', async () => {
    for (const v of ['TLSv1.2', 'TLSv1.3'] as const) {
      const protocol = await new Promise<string | null>((resolve, reject) => {
        const s = tlsConnect({ host: '127.0.0.1', port: tlsPort(), ca, minVersion: v, maxVersion: v, servername: 'localhost' });
        s.once('secureConnect', () => {
          const p = s.getProtocol();
          s.destroy();
          resolve(p);
        });
        s.once('error', reject);
      });
      expect(protocol).toBe(v);
    }
  });
});
