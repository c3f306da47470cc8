import { readFile } from 'node:fs/promises';
import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deviceTopics } from '../../../devices/topics.js';
import { connectAsDevice, connectMqtt, startGatewayInProcess, waitUntil, type InProcessGateway } from '../../helpers/gateway.js';
import { startMosquitto, type Mosquitto } from '../../helpers/mosquitto.js';
import { GRID_A, makePki, writeSecureSite, type SecureDevice, type TestPki } from './site.js';

// The uplink over TLS and mutual TLS (SPEC §7, config `uplink.tls`), against a real Mosquitto with a
// CA, server and client certificates made at test time with openssl. With the client certificate
// the gateway connects and an SOS reaches the city; without it Mosquitto refuses the handshake and
// health says disconnected (the incident waits in the outbox); trusting another CA the gateway
// refuses Mosquitto (rejectUnauthorized).

const PREFIX = 'city/110101013';
const PAGER: SecureDevice = { id: 'PGR-UPL-1', model: 'pager-json', secret: 'uplink-tls-pager-secret', grid: GRID_A, building: '5', room: '302' };

let pki: TestPki;
let mtls: Mosquitto;
let city: MqttClient;
const cityGot: { topic: string; payload: string }[] = [];

const tlsLines = (requireCert: boolean): string =>
  [`cafile ${pki.ca}`, `certfile ${pki.serverCert}`, `keyfile ${pki.serverKey}`, 'tls_version tlsv1.2', `require_certificate ${requireCert}`].join('\n');

beforeAll(async () => {
  pki = await makePki();
  // The helper's extra config lines follow its listener line, so they make that listener TLS.
  mtls = await startMosquitto({ config: tlsLines(true) });
  city = await connectMqtt(`mqtts://127.0.0.1:${mtls.port}`, {
    clientId: 'city-platform',
    ca: await readFile(pki.ca),
    cert: await readFile(pki.clientCert),
    key: await readFile(pki.clientKey),
    rejectUnauthorized: true,
  });
  await city.subscribeAsync(`${PREFIX}/#`, { qos: 1 });
  city.on('message', (topic, payload) => cityGot.push({ topic, payload: payload.toString() }));
});
afterAll(async () => {
  await city.endAsync();
});

async function gatewayWith(id: string, tls: { ca?: string; cert?: string; key?: string }): Promise<InProcessGateway> {
  const site = await writeSecureSite({
    gatewayId: id,
    devices: [PAGER],
    users: [],
    uplink: { url: `mqtts://127.0.0.1:${mtls.port}`, prefix: PREFIX, tls: { ...tls, rejectUnauthorized: true } },
  });
  return startGatewayInProcess(site);
}

async function sos(gw: InProcessGateway): Promise<void> {
  const c = await connectAsDevice(gw.url, PAGER);
  await c.publishAsync(deviceTopics.up(PAGER.id), JSON.stringify({ event: 'sos', ts: Date.now() }), { qos: 1 });
  await c.endAsync();
}

const uplinkOf = (gw: InProcessGateway) => {
  const u = gw.gateway.health().uplink;
  if (!u) throw new Error('no uplink in health');
  return u;
};

describe('uplink over mutual TLS', () => {
  it('with the CA, its certificate and key: connected, and an SOS reaches the city over TLS', async () => {
    const gw = await gatewayWith('gw-mtls-ok', { ca: pki.ca, cert: pki.clientCert, key: pki.clientKey });
    try {
      await waitUntil('uplink connected', () => uplinkOf(gw).connected, 30_000);
      expect(gw.gateway.health().ok).toBe(true);
      await sos(gw);
      await waitUntil('incident at the city', () => cityGot.some((m) => m.topic.startsWith(`${PREFIX}/${GRID_A}/incidents/gw-mtls-ok-`)), 30_000);
      const incident = JSON.parse(cityGot.find((m) => m.topic.includes('/incidents/gw-mtls-ok-'))?.payload ?? '{}') as { type?: string; deviceIds?: string[] };
      expect(incident).toMatchObject({ type: 'sos', deviceIds: [PAGER.id] });
      await waitUntil('outbox drained', () => uplinkOf(gw).outboxDepth === 0, 30_000);
      expect(cityGot.find((m) => m.topic === `${PREFIX}/gateways/gw-mtls-ok/status`)?.payload).toBe('online');
    } finally {
      await gw.stop();
    }
  });

  it('without a client certificate: Mosquitto refuses, health says disconnected, the SOS waits in the outbox', async () => {
    const gw = await gatewayWith('gw-mtls-nocert', { ca: pki.ca });
    try {
      await waitUntil('a connection error', () => uplinkOf(gw).lastError !== undefined, 30_000);
      await sos(gw);
      await waitUntil('incident in the outbox', () => uplinkOf(gw).outboxDepth > 0, 30_000);
      const u = uplinkOf(gw);
      expect(u.connected).toBe(false);
      expect(u.published).toBe(0);
      expect(gw.gateway.health().ok).toBe(false);
      expect(cityGot.some((m) => m.topic.includes('gw-mtls-nocert'))).toBe(false);
    } finally {
      await gw.stop();
    }
  });

  it('trusting another CA: the gateway refuses Mosquitto’s certificate (rejectUnauthorized) and sends nothing', async () => {
    const gw = await gatewayWith('gw-mtls-wrongca', { ca: pki.otherCa, cert: pki.clientCert, key: pki.clientKey });
    try {
      await waitUntil('a connection error', () => uplinkOf(gw).lastError !== undefined, 30_000);
      const u = uplinkOf(gw);
      expect(u.connected).toBe(false);
      expect(u.lastError?.message).toMatch(/certificate|self.signed|issuer|verify/i);
      expect(cityGot.some((m) => m.topic.includes('gw-mtls-wrongca'))).toBe(false);
    } finally {
      await gw.stop();
    }
  });
});

describe('uplink over server-only TLS', () => {
  let tlsOnly: Mosquitto;
  beforeAll(async () => {
    tlsOnly = await startMosquitto({ config: tlsLines(false) });
  });
  afterAll(() => tlsOnly.dispose());

  it('with just the CA the gateway connects; a plain mqtt:// URL to the TLS port does not', async () => {
    const ok = await startGatewayInProcess(
      await writeSecureSite({ gatewayId: 'gw-tls-ca', devices: [PAGER], users: [], uplink: { url: `mqtts://127.0.0.1:${tlsOnly.port}`, prefix: PREFIX, tls: { ca: pki.ca } } }),
    );
    const plain = await startGatewayInProcess(
      await writeSecureSite({ gatewayId: 'gw-tls-plain', devices: [PAGER], users: [], uplink: { url: `mqtt://127.0.0.1:${tlsOnly.port}`, prefix: PREFIX } }),
    );
    try {
      await waitUntil('uplink connected', () => uplinkOf(ok).connected, 30_000);
      await waitUntil('plain: a connection error', () => uplinkOf(plain).lastError !== undefined || uplinkOf(plain).reconnects > 0, 30_000);
      expect(uplinkOf(plain).connected).toBe(false);
    } finally {
      await ok.stop();
      await plain.stop();
    }
  });
});
