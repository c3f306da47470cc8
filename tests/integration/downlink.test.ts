import { afterAll, describe, expect, it } from 'vitest';
import { DownlinkError, createDownlink } from '../../gateway/downlink.js';
import { createMqttDevice } from '../../simulators/mqtt-device.js';
import { cleanupAll } from '../helpers/cleanup.js';
import { makeDevices, mqttModel, startGatewayInProcess, storedReadings, waitUntil, writeGatewaySite } from '../helpers/gateway.js';

// Issue 3 §3: commands to a device on dev/{id}/down through its model's encoder — ack when a human
// acknowledges an incident the device raised, mute and self_test from the operator.
describe('downlink', () => {
  afterAll(async () => {
    await cleanupAll();
  });

  it('sends mute and self_test, and the ack of a human acknowledgement, to the real device', async () => {
    const [smoke, pager] = [...makeDevices('SMK', 1, { model: 'smoke-json' }), ...makeDevices('PGR', 1, { model: 'pager-json' })] as const;
    if (!smoke || !pager) throw new Error('no devices');
    const site = await writeGatewaySite({ devices: [smoke, pager] });
    const gw = await startGatewayInProcess(site);
    const sims = [smoke, pager].map((d) => createMqttDevice({ url: gw.url, deviceId: d.id, secret: d.secret, model: mqttModel(d.model), heartbeatMs: 0 }));
    await Promise.all(sims.map((s) => s.start()));
    const [smokeSim, pagerSim] = sims as [(typeof sims)[number], (typeof sims)[number]];
    try {
      const { downlink, manager } = gw.gateway.safety;
      await downlink.send(smoke.id, { cmd: 'mute' });
      await downlink.send(smoke.id, { cmd: 'self_test' });
      await waitUntil('the detector got both commands', () => smokeSim.status.commands.length >= 2);
      expect(smokeSim.status.commands.map((c) => c.command?.cmd)).toEqual(['mute', 'self_test']);
      // The simulated detector answers a self_test with a test message, stored as a self_test event.
      await waitUntil('the self-test reading', () => storedReadings(site.dbPath, smoke.id).some((r) => r.events.includes('self_test')));

      await pagerSim.send({ events: ['sos'] }, { qos: 1 });
      await waitUntil('the sos incident', () => manager.list({}).some((i) => i.type === 'sos'));
      const sos = manager.list({}).find((i) => i.type === 'sos');
      if (!sos) throw new Error('no sos');
      manager.transition(sos.id, 'ack', 'user:wang', '马上到');
      await waitUntil('the pager got the ack', () => pagerSim.status.commands.some((c) => c.command?.cmd === 'ack'));
      expect(pagerSim.status.commands.find((c) => c.command?.cmd === 'ack')?.command).toEqual({ cmd: 'ack', incident: sos.id, text: '马上到' });
    } finally {
      await Promise.all(sims.map((s) => s.stop()));
      await gw.stop();
    }
  });

  it('refuses unknown devices and devices that are not on MQTT, with a typed error', async () => {
    const sent: string[] = [];
    const downlink = createDownlink({
      registry: { get: (id) => (id === 'ELC-1' ? { id, model: 'elec-ers1', place: { grid: '110101013001002', building: '', room: '' } } : undefined) },
      broker: { publishDown: (id) => Promise.resolve(void sent.push(id)) },
    });
    await expect(downlink.send('NOPE', { cmd: 'mute' })).rejects.toMatchObject({ code: 'DL_ERR_UNKNOWN_DEVICE' });
    await expect(downlink.send('ELC-1', { cmd: 'self_test' })).rejects.toBeInstanceOf(DownlinkError);
    expect(sent).toEqual([]);
  });
});
