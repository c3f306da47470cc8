/**
 * How deep a YAML text nests, measured before it is parsed (here, in the leaf every loader may
 * import: gridedge.yaml, rule files and scenarios all use it). yaml 2.x composes documents
 * recursively: about a thousand levels (2 KB of `[`) overflow the stack, and once that happened a
 * second parse in the same process could abort Node ("RegExpCompiler Allocation failed"). No
 * gridedge.yaml needs more than a handful of levels, so the loader refuses deeper text up front.
 */
export const MAX_YAML_DEPTH = 64;

/**
 * The 1-based line where `source` first nests deeper than `max` levels, or undefined. Levels are
 * counted as the parser would build them: block indentation steps, `- ` entries opened on the
 * same line, and open flow collections (`[`, `{`) outside quotes and comments. An estimate, on the
 * safe side: it may count a level the parser would not, never the other way by much.
 */
export function yamlTooDeepAt(source: string, max = MAX_YAML_DEPTH): number | undefined {
  const indents: number[] = [];
  let flow = 0;
  let quote: '"' | "'" | undefined;
  const lines = source.split('\n');
  for (let n = 0; n < lines.length; n++) {
    const line = lines[n] as string;
    let i = 0;
    if (quote === undefined && flow === 0) {
      while (line[i] === ' ') i++;
      const rest = line.slice(i);
      if (rest.trim() === '' || rest.startsWith('#')) continue;
      while (indents.length > 0 && (indents[indents.length - 1] as number) >= i) indents.pop();
      indents.push(i);
      // `- - - x`: each indicator on the line opens one more block sequence.
      let dashes = 0;
      while (line.startsWith('- ', i + dashes * 2)) dashes++;
      if (indents.length + dashes > max) return n + 1;
    }
    for (; i < line.length; i++) {
      const c = line[i];
      if (quote !== undefined) {
        if (c === '\\' && quote === '"') i++;
        else if (c === quote) quote = undefined;
        continue;
      }
      if (c === '"' || c === "'") quote = c;
      else if (c === '#' && (i === 0 || line[i - 1] === ' ' || line[i - 1] === '\t')) break;
      else if (c === '[' || c === '{') {
        flow++;
        if (indents.length + flow > max) return n + 1;
      } else if ((c === ']' || c === '}') && flow > 0) flow--;
    }
  }
  return undefined;
}
