/**
 * `${NAME}` substitution (SPEC §11), applied to every string value of the parsed YAML — after
 * parsing, not on the text, so a password holding `#`, `:` or a quote cannot change the
 * document's structure. Keys are not substituted. `$${NAME}` is a literal `${NAME}`.
 *
 * A variable that is set but empty substitutes as the empty string; the schema then decides
 * whether an empty value is acceptable for that field (a token, for one, is not).
 */
export type Env = Readonly<Record<string, string | undefined>>;

export interface MissingVariable {
  readonly path: readonly (string | number)[];
  readonly name: string;
}

export interface Substituted {
  readonly value: unknown;
  readonly missing: readonly MissingVariable[];
}

const REFERENCE = /\$(\$?)\{([^}]*)\}/g;
const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

export function substituteEnv(value: unknown, env: Env): Substituted {
  const missing: MissingVariable[] = [];
  const walk = (node: unknown, path: (string | number)[]): unknown => {
    if (typeof node === 'string') return substituteString(node, env, (name) => missing.push({ path, name }));
    if (Array.isArray(node)) return node.map((item, i) => walk(item, [...path, i]));
    if (node !== null && typeof node === 'object') {
      const out: Record<string, unknown> = {};
      for (const [key, item] of Object.entries(node)) out[key] = walk(item, [...path, key]);
      return out;
    }
    return node;
  };
  return { value: walk(value, []), missing };
}

function substituteString(text: string, env: Env, onMissing: (name: string) => void): string {
  return text.replace(REFERENCE, (whole, escape: string, name: string) => {
    if (escape) return whole.slice(1);
    // `${not a name}` is most likely a typo for a variable: report it rather than keep it.
    if (!NAME.test(name)) {
      onMissing(name);
      return '';
    }
    const v = env[name];
    if (v === undefined) {
      onMissing(name);
      return '';
    }
    return v;
  });
}
