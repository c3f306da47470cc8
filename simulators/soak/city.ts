import { connectAsync, type MqttClient } from 'mqtt';

/*
 * The city platform's side of the soak: one subscriber on the upstream broker for the whole run
 * (it is never restarted, so it misses nothing published after it subscribed), recording every
 * incident message as it arrived.
 */

export interface CityMessage {
  readonly topic: string;
  readonly payload: string;
  readonly id: string;
  readonly version: number;
  /** The change this message carries: its last timeline entry's action. */
  readonly action: string | undefined;
  readonly ruleId: string;
  readonly scopeKey: string;
}

export interface City {
  messages(): readonly CityMessage[];
  /** Messages that were not incident JSON (none expected). */
  malformed(): readonly string[];
  close(): Promise<void>;
}

interface UpIncident {
  id: string;
  version: number;
  ruleId: string;
  scopeKey: string;
  timeline: { action: string }[];
}

export async function subscribeCity(url: string, prefix: string): Promise<City> {
  const client: MqttClient = await connectAsync(url, { clientId: `city-kill9-${process.pid}`, protocolVersion: 4, reconnectPeriod: 0, clean: true });
  const messages: CityMessage[] = [];
  const malformed: string[] = [];
  client.on('message', (topic, payload) => {
    const text = payload.toString('utf8');
    try {
      const inc = JSON.parse(text) as UpIncident;
      messages.push({ topic, payload: text, id: inc.id, version: inc.version, action: inc.timeline.at(-1)?.action, ruleId: inc.ruleId, scopeKey: inc.scopeKey });
    } catch {
      malformed.push(`${topic}: ${text.slice(0, 200)}`);
    }
  });
  await client.subscribeAsync(`${prefix}/+/incidents/#`, { qos: 1 });
  return {
    messages: () => messages,
    malformed: () => malformed,
    close: () => client.endAsync(true),
  };
}
