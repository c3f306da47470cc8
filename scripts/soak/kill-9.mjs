// kill -9 of the gateway under mixed load, as a soak (issue 8): the scenario of
// tests/integration/faults/kill-9-mixed.test.ts (simulators/soak/kill-9.ts), 20 iterations by
// default, with its own Mosquitto on 127.0.0.1. Prints a row per iteration and a summary; exits 1
// when anything acknowledged was lost or an incident was duplicated or forgotten.
//
//   npm run build && npm run soak:kill -- --iterations 50 [--seed N] [--devices 30] [--rate 300] [--load-ms 3000]
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import process from 'node:process';

const USAGE = 'usage: node scripts/soak/kill-9.mjs [--iterations N] [--seed N] [--devices N] [--rate MSG_PER_S] [--load-ms MS] [--keep]';

function option(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const v = Number(process.argv[i + 1]);
  if (!Number.isSafeInteger(v) || v < (name === 'seed' ? 0 : 1)) {
    console.error(`--${name} needs a whole number${name === 'seed' ? '' : ' above 0'}\n${USAGE}`);
    process.exit(2);
  }
  return v;
}

if (process.argv.includes('--help') || process.argv.includes('-h')) {
  console.log(USAGE);
  process.exit(0);
}

let soak;
try {
  soak = await import('../../dist/simulators/soak/kill-9.js');
} catch (err) {
  console.error(`dist/ is missing or stale (${err.message}): run \`npm run build\` first`);
  process.exit(2);
}
const { formatKill9Report, tableHeader, tableRow } = await import('../../dist/simulators/soak/report.js');
const { killStartedChildren } = await import('../../dist/simulators/soak/children.js');

const options = {
  iterations: option('iterations', 20),
  devices: option('devices', 30),
  ratePerSecond: option('rate', 300),
  loadMs: option('load-ms', 3000),
  ...(process.argv.includes('--seed') ? { seed: option('seed', 0) } : {}),
};
const workDir = await mkdtemp(join(tmpdir(), 'gridedge-soak-kill9-'));
const keep = process.argv.includes('--keep');
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => {
    killStartedChildren();
    process.exit(130);
  });
}

let failed = true;
try {
  process.stdout.write(tableHeader());
  const report = await soak.runKill9({
    ...options,
    workDir,
    onIteration: (row) => process.stdout.write(tableRow(row)),
  });
  process.stdout.write(`\n${formatKill9Report(report)}`);
  failed = report.verification.problems.length > 0 || report.rows.some((r) => r.exit !== 'SIGKILL');
} catch (err) {
  console.error(err);
} finally {
  killStartedChildren();
  if (keep || failed) console.error(`files kept in ${workDir}`);
  else await rm(workDir, { recursive: true, force: true });
}
process.exitCode = failed ? 1 : 0;
