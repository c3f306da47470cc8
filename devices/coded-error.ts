/**
 * The one shape of the error catalogues (STYLE.md: one catalogue per folder, stable codes):
 * `new StoreError('STORE_ERR_OPEN', path, { cause })` has `code` for callers to branch on and the
 * catalogue's text (plus the detail) as its message. In devices/, the leaf every folder may import.
 *
 *   export class StoreError extends codedError('StoreError', STORE_ERRORS) {}
 */
export function codedError<C extends string>(name: string, catalogue: Readonly<Record<C, string>>) {
  return class CodedError extends Error {
    override readonly name: string = name;
    readonly code: C;

    constructor(code: C, detail?: string, options?: { cause?: unknown }) {
      super(detail ? `${catalogue[code]}: ${detail}` : catalogue[code], options);
      this.code = code;
    }
  };
}
