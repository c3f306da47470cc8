#!/usr/bin/env node
// The installed entry point: the CLI is TypeScript compiled to dist/ by `npm run build`
// (which `npm ci` runs through the prepare script).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const main = new URL('../dist/gateway/cli/main.js', import.meta.url);
if (!existsSync(fileURLToPath(main))) {
  console.error('gridedge: dist/ is missing; run `npm run build` first');
  process.exit(1);
}
const { run } = await import(main.href);
process.exitCode = await run(process.argv.slice(2));
