import { deviceTopics, localTopics, parseDeviceTopic } from '../../devices/topics.js';

/**
 * The topic ACL of SPEC §3, as pure functions. Devices: publish `dev/{id}/up` and
 * `dev/{id}/status`, subscribe `dev/{id}/down`, nothing else. Operators: read-only, the local
 * republish trees only.
 */

export type DevicePublishTarget = 'up' | 'status';

/** What a device may publish on `topic`, or undefined when it may not. */
export function devicePublishTarget(deviceId: string, topic: string): DevicePublishTarget | undefined {
  const t = parseDeviceTopic(topic);
  if (!t || t.deviceId !== deviceId || t.channel === 'down') return undefined;
  return t.channel;
}

/** Exactly the device's own downlink topic: no wildcards, even ones that would only match it. */
export function deviceMaySubscribe(deviceId: string, filter: string): boolean {
  return filter === deviceTopics.down(deviceId);
}

// `gridedge/readings/#` → `gridedge/readings/`: the roots operators may read, from the topic module.
const OPERATOR_ROOTS: readonly string[] = [localTopics.readingsFilter, localTopics.incidentsFilter].map((f) =>
  f.endsWith('#') ? f.slice(0, -1) : `${f}/`,
);

/**
 * A filter inside one of the operator trees: the tree itself (`gridedge/readings/#`) or anything
 * below it (`gridedge/readings/smoke/+`). `gridedge/#`, `#` and `+/readings/#` would reach
 * further and are refused.
 */
export function operatorMaySubscribe(filter: string): boolean {
  return OPERATOR_ROOTS.some((root) => filter.startsWith(root) && filter.length > root.length);
}

/** A topic an operator may receive. */
export function operatorMayReceive(topic: string): boolean {
  return OPERATOR_ROOTS.some((root) => topic.startsWith(root));
}

/** Status payloads (SPEC §3): `online` / `offline`, surrounding whitespace tolerated. */
export function parseStatus(payload: Buffer): boolean | undefined {
  if (payload.length > 16) return undefined;
  const s = payload.toString('latin1').trim();
  if (s === 'online') return true;
  if (s === 'offline') return false;
  return undefined;
}
