/**
 * The device registry's columns, SPEC §11, in the order the writer uses. The same names are the
 * keys of an inline `devices:` row in gridedge.yaml, so both sources validate the same way.
 */
export const DEVICE_COLUMNS = [
  'id',
  'model',
  'grid',
  'building',
  'room',
  'secret',
  'bus',
  'address',
  'rf',
  'heartbeat',
  'resident_name',
  'resident_phone',
] as const;

export type DeviceColumn = (typeof DEVICE_COLUMNS)[number];

/** One row as written: absent cells (empty in the CSV) are missing keys. */
export type DeviceCells = Partial<Record<DeviceColumn, string>>;
