#!/usr/bin/env node
// The broker alone, for the benchmarks' ceiling: aedes + net, every client accepted, every
// publish authorized at once (no store, no InfluxDB). Prints its port; SIGTERM closes it.
// Started by scripts/bench/lib.mjs `startBareAedes()`.
import { createServer } from 'node:net';
import process from 'node:process';
import { Aedes } from 'aedes';

const broker = await Aedes.createBroker({
  authenticate: (_client, _user, _pass, cb) => cb(null, true),
  authorizePublish: (_client, _packet, cb) => cb(null),
});
const server = createServer(broker.handle);
server.listen(0, '127.0.0.1', () => process.stdout.write(`bare aedes on 127.0.0.1:${server.address().port}\n`));
process.on('SIGTERM', () => {
  server.close();
  broker.close(() => process.exit(0));
});
