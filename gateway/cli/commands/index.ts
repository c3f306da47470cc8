import type { Command } from '../command.js';
import { configCheck } from './config-check.js';
import { demo } from './demo.js';
import { devicesImport } from './devices-import.js';
import { devicesList } from './devices-list.js';
import { rulesCheck } from './rules-check.js';
import { simulate } from './simulate.js';
import { start } from './start.js';

/**
 * Every command `gridedge` has, in the order `--help` lists them. To add one (start, demo,
 * simulate, rules check), write `commands/<name>.ts` exporting a `Command` and add it here;
 * main.ts dispatches on the words of `name` and builds the help from this list.
 */
export const COMMANDS: readonly Command[] = [start, demo, simulate, configCheck, rulesCheck, devicesImport, devicesList];
