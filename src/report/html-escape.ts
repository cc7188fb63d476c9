/**
 * Escaping for the report page. Everything from a recording (hostnames, commands, namespace
 * names, notices) is hostile input: the `markup` template escapes every value it interpolates,
 * unless the value is already Html (made by `markup` itself or by `trusted` for markup this
 * code wrote). Escaping covers element content and quoted attribute values, in HTML and SVG.
 */
export class Html {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

const ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ENTITIES[c]!);
}

type Value = Html | string | number | boolean | null | undefined | readonly Value[];

function render(value: Value): string {
  if (value === null || value === undefined || value === false) return '';
  if (value instanceof Html) return value.text;
  if (Array.isArray(value)) return value.map(render).join('');
  return escapeHtml(String(value));
}

/**
 * A template whose interpolations are escaped (arrays are joined, null/undefined/false empty). */
export function markup(strings: TemplateStringsArray, ...values: Value[]): Html {
  let out = strings[0]!;
  values.forEach((v, i) => (out += render(v) + strings[i + 1]!));
  return new Html(out);
}

/** Markup written by this code, with no outside text in it. */
export function trusted(markup: string): Html {
  return new Html(markup);
}
