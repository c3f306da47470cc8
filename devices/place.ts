import { z } from 'zod';

/**
 * A Beijing-style unit grid code, SPEC §1: district (6, GB/T 2260) + street (3) +
 * community (3) + grid sequence (3) = 15 digits.
 */
export const GridCodeSchema = z
  .string()
  .regex(/^\d{15}$/, { message: 'grid code must be 15 digits (district 6 + street 3 + community 3 + grid 3)' });
export type GridCode = z.infer<typeof GridCodeSchema>;

export interface GridCodeParts {
  district: string;
  street: string;
  community: string;
  grid: string;
}

/** Splits a valid grid code into its parts; `street` and `community` are the full prefixes. */
export function splitGridCode(code: GridCode): GridCodeParts {
  return {
    district: code.slice(0, 6),
    street: code.slice(0, 9),
    community: code.slice(0, 12),
    grid: code,
  };
}

/** Where a device is: SPEC §1. Building and room are free UTF-8 text. */
export const PlaceSchema = z.object({
  grid: GridCodeSchema,
  building: z.string().max(64).default(''),
  room: z.string().max(64).default(''),
  address: z.string().max(256).optional(),
});
export type Place = z.infer<typeof PlaceSchema>;
