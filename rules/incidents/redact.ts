/**
 * Residents' personal data never goes into an incident, its timeline, the logs or the uplink
 * (SPEC §8). Structured fields cannot carry it (the schema is strict and the manager copies
 * fields one by one); free text can: a rule summary, a dispatcher's note ("called her son on
 * 138…"). Every free-text field passes through a redactor before it is stored. This default one
 * catches what has a shape — mobile and landline numbers, ID card numbers; the gateway, which
 * knows the registry's resident names and phones, can pass a stronger one.
 */
export type Redactor = (text: string) => string;

export const REDACTED = '[redacted]';

const PATTERNS: readonly RegExp[] = [
  // 18-digit resident ID card numbers (GB 11643), the last digit may be X.
  /(?<![\dA-Za-z])\d{17}[\dXx](?![\dA-Za-z])/g,
  // Mobile numbers, optionally +86 / 0086, optionally grouped 3-4-4 by spaces or dashes.
  /(?<![\d])(?:(?:\+|00)86[\s-]?)?1[3-9]\d(?:[\s-]?\d{4}){2}(?!\d)/g,
  // Landlines with an area code: 010-12345678, (010) 1234 5678, 0755-1234567.
  /(?<![\d])\(?0\d{2,3}\)?[\s-]?\d{3,4}[\s-]?\d{4}(?!\d)/g,
];

export const redactPersonalData: Redactor = (text) => PATTERNS.reduce((t, re) => t.replace(re, REDACTED), text);

/** A redactor for known values (the registry's names and phones) on top of the default one. */
export function redactorFor(values: Iterable<string>, base: Redactor = redactPersonalData): Redactor {
  const known = [...new Set([...values].map((v) => v.trim()).filter((v) => v.length >= 2))].sort((a, b) => b.length - a.length);
  if (known.length === 0) return base;
  const re = new RegExp(known.map((v) => v.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|'), 'g');
  return (text) => base(text.replace(re, REDACTED));
}
