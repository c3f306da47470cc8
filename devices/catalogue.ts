import { model as elecErs1 } from './models/elec-ers1/index.js';
import { model as pagerJson } from './models/pager-json/index.js';
import { model as pagerRf } from './models/pager-rf/index.js';
import { model as smokeCtw } from './models/smoke-ctw/index.js';
import { model as smokeJson } from './models/smoke-json/index.js';
import type { Model } from './model.js';

/** Every model gridedge speaks (SPEC §2). A test fails when a folder in models/ is missing here. */
export const MODELS: ReadonlyMap<string, Model> = new Map<string, Model>(
  [smokeJson, smokeCtw, pagerJson, elecErs1, pagerRf].map((m) => [m.id, m]),
);

export function getModel(id: string): Model | undefined {
  return MODELS.get(id);
}

export const MODEL_IDS: readonly string[] = [...MODELS.keys()];
