/**
 * Every MQTT topic gridedge uses, in one module (SPEC §3, §7). Device ids never contain
 * `/`, `+` or `#` (the registry refuses them), so they can be put into topics as they are.
 */
export const deviceTopics = {
  up: (id: string) => `dev/${id}/up`,
  status: (id: string) => `dev/${id}/status`,
  down: (id: string) => `dev/${id}/down`,
} as const;

/** `dev/{id}/{up|status|down}` → its parts, or undefined for any other topic. */
export function parseDeviceTopic(topic: string): { deviceId: string; channel: 'up' | 'status' | 'down' } | undefined {
  const m = /^dev\/([^/+#]+)\/(up|status|down)$/.exec(topic);
  if (!m) return undefined;
  return { deviceId: m[1] as string, channel: m[2] as 'up' | 'status' | 'down' };
}

/** Topics the gateway republishes on its embedded broker for local operator tools (SPEC §3). */
export const localTopics = {
  reading: (kind: string, deviceId: string) => `gridedge/readings/${kind}/${deviceId}`,
  incident: (id: string) => `gridedge/incidents/${id}`,
  readingsFilter: 'gridedge/readings/#',
  incidentsFilter: 'gridedge/incidents/#',
} as const;

/** Topics on the upstream (city) broker (SPEC §7). */
export const uplinkTopics = {
  incident: (prefix: string, grid: string, id: string) => `${prefix}/${grid}/incidents/${id}`,
  gatewayStatus: (prefix: string, gatewayId: string) => `${prefix}/gateways/${gatewayId}/status`,
  gatewayCmd: (prefix: string, gatewayId: string) => `${prefix}/gateways/${gatewayId}/cmd`,
} as const;
