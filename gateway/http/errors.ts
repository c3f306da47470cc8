/**
 * The HTTP error catalogue (STYLE.md: one catalogue per folder, stable codes; fastify lib/errors.js).
 * Clients branch on `code`; messages never echo request input beyond a sanitised field path.
 */
export const HTTP_ERRORS = {
  HTTP_ERR_UNAUTHORIZED: { status: 401, message: 'a valid bearer token is required' },
  HTTP_ERR_FORBIDDEN: { status: 403, message: 'outside your grids or role' },
  HTTP_ERR_NOT_FOUND: { status: 404, message: 'not found' },
  HTTP_ERR_BAD_REQUEST: { status: 400, message: 'invalid request' },
  HTTP_ERR_CONFLICT: { status: 409, message: 'the request conflicts with the resource’s current state' },
  HTTP_ERR_TOO_LARGE: { status: 413, message: 'the request body is too large' },
  HTTP_ERR_MEDIA_TYPE: { status: 415, message: 'a request body must be application/json (UTF-8)' },
  HTTP_ERR_METHOD: { status: 405, message: 'method not allowed on this path' },
  /** A bug: the details are logged, never sent. */
  HTTP_ERR_INTERNAL: { status: 500, message: 'internal error' },
} as const;

export type HttpErrorCode = keyof typeof HTTP_ERRORS;

export class HttpError extends Error {
  override readonly name = 'HttpError';
  readonly status: number;
  constructor(
    readonly code: HttpErrorCode,
    message?: string,
    /** The offending field, e.g. `note` or `query.since` (400 only). */
    readonly path?: string,
  ) {
    super(message ?? HTTP_ERRORS[code].message);
    this.status = HTTP_ERRORS[code].status;
  }
}

export function errorBody(err: HttpError): { error: { code: HttpErrorCode; message: string; path?: string } } {
  return { error: { code: err.code, message: err.message, ...(err.path !== undefined ? { path: err.path } : {}) } };
}
