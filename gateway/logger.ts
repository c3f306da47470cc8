import pino, { type DestinationStream, type Logger } from 'pino';

/**
 * One root logger; modules take `logger.child({ module })`. Secrets and residents' personal data
 * must never reach a log line (SPEC §8): the code does not log them, and these paths are redacted
 * as a second line of defence should an object carrying them ever be logged whole.
 */
export const REDACT_PATHS = [
  'password',
  'secret',
  'secretHash',
  'token',
  'tokenHash',
  'resident',
  '*.password',
  '*.secret',
  '*.secretHash',
  '*.token',
  '*.tokenHash',
  '*.resident',
  'device.resident',
  'device.secretHash',
];

export function createLogger(options: { level?: string; destination?: DestinationStream } = {}): Logger {
  return pino(
    { level: options.level ?? 'info', redact: { paths: REDACT_PATHS, censor: '[redacted]' }, base: { pid: process.pid } },
    options.destination,
  );
}
