import { z } from 'zod';
import { INCIDENT_ACTIONS, IncidentError, NOTE_MAX, parseIncidentId, type IncidentManager } from '../../rules/incidents/index.js';
import { UplinkError } from './errors.js';

/**
 * A command from the city platform on `{prefix}/gateways/{gatewayId}/cmd` (SPEC §7). Extra keys
 * (a platform's request id, a timestamp) are ignored; wrong types are refused.
 */
export const UplinkCommandSchema = z.object({
  cmd: z.enum(INCIDENT_ACTIONS),
  incident: z.string().min(1).max(128),
  /** Who at the city platform: recorded as `city:<actor>` in the timeline. */
  actor: z.string().trim().min(1).max(64),
  note: z.string().max(NOTE_MAX).optional(),
});
export type UplinkCommand = z.infer<typeof UplinkCommandSchema>;

/** Commands bigger than this are refused unread. */
export const MAX_COMMAND_BYTES = 4_096;

export type CommandRejection = 'too_large' | 'retained' | 'encoding' | 'json' | 'schema' | 'foreign';

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Wire bytes → a command for this gateway, or the reason it is refused. Never throws. */
export function parseCommand(
  payload: Uint8Array,
  gatewayId: string,
  opts: { retain?: boolean } = {},
): { ok: true; command: UplinkCommand } | { ok: false; reason: CommandRejection; detail: string } {
  // A retained command would be executed again on every reconnect: a command is an event.
  if (opts.retain === true) return { ok: false, reason: 'retained', detail: 'retained commands are refused' };
  if (payload.byteLength > MAX_COMMAND_BYTES) return { ok: false, reason: 'too_large', detail: `${payload.byteLength} bytes > ${MAX_COMMAND_BYTES}` };
  let text: string;
  try {
    text = utf8.decode(payload);
  } catch {
    return { ok: false, reason: 'encoding', detail: 'not UTF-8' };
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    // Not the parser's message: it quotes the input, and the input is not ours to log.
    return { ok: false, reason: 'json', detail: 'not valid JSON' };
  }
  const parsed = UplinkCommandSchema.safeParse(json);
  if (!parsed.success) return { ok: false, reason: 'schema', detail: z.prettifyError(parsed.error) };
  // The cmd topic is per gateway; an id of another gateway on it is a platform bug (or worse).
  if (parseIncidentId(parsed.data.incident)?.gatewayId !== gatewayId) {
    return { ok: false, reason: 'foreign', detail: `incident ${parsed.data.incident} is not an incident of ${gatewayId}` };
  }
  return { ok: true, command: parsed.data };
}

/**
 * The `onCommand` the gateway wires: the stored incident must be this gateway's (its `gatewayId`
 * field, not only its id), then the manager applies the transition with actor `city:<actor>`.
 * Throws INC_ERR_NOT_FOUND, INC_ERR_TRANSITION or UPLINK_ERR_FOREIGN; the uplink counts them.
 */
export function createCommandHandler(manager: Pick<IncidentManager, 'get' | 'transition'>, gatewayId: string): (cmd: UplinkCommand) => void {
  return (cmd) => {
    const inc = manager.get(cmd.incident);
    if (!inc) throw new IncidentError('INC_ERR_NOT_FOUND', cmd.incident);
    if (inc.gatewayId !== gatewayId) throw new UplinkError('UPLINK_ERR_FOREIGN', `${cmd.incident} belongs to ${inc.gatewayId}`);
    manager.transition(cmd.incident, cmd.cmd, `city:${cmd.actor}`, cmd.note);
  };
}
