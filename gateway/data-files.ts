import { join } from 'node:path';

/** The readings store inside `gateway.dataDir` (incidents live beside it in `incidents.db`). */
export function storePath(dataDir: string): string {
  return join(dataDir, 'gridedge.db');
}
