// Turns HTML outputs (pandas data frames, styled tables, rich reprs) into plain text an agent can read.

type Token =
  | { kind: 'open'; name: string; attrs: Record<string, string>; selfClosing: boolean }
  | { kind: 'close'; name: string }
  | { kind: 'text'; text: string };

export interface TableTextOptions {
  /** Body rows shown before a "… N more rows" line (default 30). */
  maxRows?: number;
  /** Characters per cell before it is cut with "…" (default 24). */
  maxColWidth?: number;
  /** Columns shown before a "… N more columns" line (default 40). */
  maxCols?: number;
}

/** How big a table is, as a reader would count it: data rows and data columns (index columns excluded). */
export interface TableShape {
  rows: number;
  columns: number;
}

// Elements whose content is never shown (and may contain "<" that is not markup).
const HIDDEN = new Set(['style', 'script', 'head', 'template', 'noscript']);
const RAW_TEXT = new Set(['style', 'script', 'textarea', 'title']);
const VOID = new Set(['br', 'hr', 'img', 'input', 'meta', 'link', 'col', 'area', 'base', 'wbr', 'source']);
const BLOCK = new Set([
  'address', 'article', 'aside', 'blockquote', 'details', 'dd', 'div', 'dl', 'dt', 'figcaption', 'figure',
  'footer', 'form', 'header', 'hr', 'li', 'main', 'nav', 'ol', 'p', 'pre', 'section', 'summary', 'ul',
  'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'caption',
]);
// Text outside a table beyond this many characters means the HTML is a document that contains a table.
const MAX_SURROUNDING_TEXT = 300;

const NAMED_ENTITIES: Record<string, string> = {
  amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: ' ', times: '×', hellip: '…', mdash: '—',
  ndash: '–', copy: '©', reg: '®', deg: '°', plusmn: '±', middot: '·', laquo: '«', raquo: '»', lsquo: '‘',
  rsquo: '’', ldquo: '“', rdquo: '”', bull: '•', euro: '€', pound: '£', yen: '¥', cent: '¢', micro: 'µ',
  para: '¶', sect: '§', ensp: ' ', emsp: ' ', thinsp: ' ', larr: '←', rarr: '→', uarr: '↑', darr: '↓',
  le: '≤', ge: '≥', ne: '≠', infin: '∞', minus: '−', check: '✓',
};

export function decodeEntities(text: string): string {
  return text.replace(/&(#x[0-9a-f]+|#[0-9]+|[a-z][a-z0-9]*);/gi, (whole, body: string) => {
    if (body[0] === '#') {
      const code = body[1] === 'x' || body[1] === 'X' ? parseInt(body.slice(2), 16) : parseInt(body.slice(1), 10);
      return Number.isFinite(code) && code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : whole;
    }
    return NAMED_ENTITIES[body.toLowerCase()] ?? whole;
  });
}

const ATTRIBUTE = /([^\s=/>"']+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+)))?/g;

function tokenize(html: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  let textStart = 0;
  const flushText = (end: number): void => {
    if (end > textStart) tokens.push({ kind: 'text', text: decodeEntities(html.slice(textStart, end)) });
  };
  while (i < html.length) {
    const lt = html.indexOf('<', i);
    if (lt < 0) break;
    const next = html[lt + 1] ?? '';
    if (html.startsWith('<!--', lt)) {
      flushText(lt);
      const end = html.indexOf('-->', lt + 4);
      i = textStart = end < 0 ? html.length : end + 3;
      continue;
    }
    if (next === '!' || next === '?') {
      flushText(lt);
      const end = html.indexOf('>', lt);
      i = textStart = end < 0 ? html.length : end + 1;
      continue;
    }
    const closing = next === '/';
    const nameMatch = /^[a-zA-Z][a-zA-Z0-9:-]*/.exec(html.slice(lt + (closing ? 2 : 1), lt + 40));
    if (!nameMatch) {
      i = lt + 1; // a literal "<" in text
      continue;
    }
    flushText(lt);
    const name = nameMatch[0].toLowerCase();
    // Find the tag's ">" outside quoted attribute values.
    let j = lt + (closing ? 2 : 1) + nameMatch[0].length;
    let quote = '';
    for (; j < html.length; j++) {
      const c = html[j];
      if (quote) {
        if (c === quote) quote = '';
      } else if (c === '"' || c === "'") quote = c;
      else if (c === '>') break;
    }
    const inner = html.slice(lt + (closing ? 2 : 1) + nameMatch[0].length, j);
    i = textStart = Math.min(j + 1, html.length);
    if (closing) {
      tokens.push({ kind: 'close', name });
      continue;
    }
    const attrs: Record<string, string> = {};
    for (const m of inner.matchAll(ATTRIBUTE)) {
      const key = m[1];
      if (key) attrs[key.toLowerCase()] = decodeEntities(m[2] ?? m[3] ?? m[4] ?? '');
    }
    const selfClosing = inner.trimEnd().endsWith('/') || VOID.has(name);
    tokens.push({ kind: 'open', name, attrs, selfClosing });
    if (RAW_TEXT.has(name) && !selfClosing) {
      const endTag = html.toLowerCase().indexOf(`</${name}`, i);
      const end = endTag < 0 ? html.length : endTag;
      if (end > i) tokens.push({ kind: 'text', text: name === 'title' || name === 'textarea' ? decodeEntities(html.slice(i, end)) : html.slice(i, end) });
      i = textStart = end;
    }
  }
  flushText(html.length);
  return tokens;
}

interface Cell {
  text: string;
  header: boolean;
  colspan: number;
  rowspan: number;
}
interface Row {
  cells: Cell[];
  inHead: boolean;
}
interface ParsedTable {
  rows: Row[];
  caption: string;
}

function spanOf(value: string | undefined): number {
  const n = value === undefined ? 1 : parseInt(value, 10);
  return Number.isFinite(n) && n >= 1 ? Math.min(n, 1000) : 1;
}

function collapse(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

/** Parses the table opening at tokens[start]; returns it and the index just past its closing tag. */
function parseTable(tokens: Token[], start: number): { table: ParsedTable; end: number } {
  const rows: Row[] = [];
  let caption = '';
  let inHead = false;
  let row: Row | null = null;
  let cell: Cell | null = null;
  let inCaption = false;
  let hidden = 0;
  let depth = 0;
  let i = start;
  for (; i < tokens.length; i++) {
    const t = tokens[i];
    if (!t) break;
    if (t.kind === 'open') {
      if (HIDDEN.has(t.name) && !t.selfClosing) hidden++;
      if (t.name === 'table') {
        depth++;
        if (depth > 1 && cell) cell.text += ' ';
        continue;
      }
      if (depth > 1) {
        if (cell && (t.name === 'td' || t.name === 'th' || t.name === 'br')) cell.text += ' ';
        continue;
      }
      switch (t.name) {
        case 'thead':
          inHead = true;
          break;
        case 'tbody':
        case 'tfoot':
          inHead = false;
          break;
        case 'tr':
          row = { cells: [], inHead };
          rows.push(row);
          cell = null;
          break;
        case 'td':
        case 'th':
          if (!row) {
            row = { cells: [], inHead };
            rows.push(row);
          }
          cell = { text: '', header: t.name === 'th', colspan: spanOf(t.attrs.colspan), rowspan: spanOf(t.attrs.rowspan) };
          row.cells.push(cell);
          break;
        case 'caption':
          inCaption = true;
          break;
        case 'br':
          if (cell) cell.text += ' ';
          break;
      }
    } else if (t.kind === 'close') {
      if (HIDDEN.has(t.name)) hidden = Math.max(0, hidden - 1);
      if (t.name === 'table') {
        depth--;
        if (depth === 0) {
          i++;
          break;
        }
      } else if (depth === 1) {
        if (t.name === 'td' || t.name === 'th') cell = null;
        else if (t.name === 'tr') {
          row = null;
          cell = null;
        } else if (t.name === 'thead') inHead = false;
        else if (t.name === 'caption') inCaption = false;
      }
    } else if (hidden === 0) {
      if (cell) cell.text += t.text;
      else if (inCaption) caption += t.text;
    }
  }
  for (const r of rows) for (const c of r.cells) c.text = collapse(c.text);
  return { table: { rows, caption: collapse(caption) }, end: i };
}

/** Lays cells out on a grid, repeating a spanned cell's text in every slot it covers so each row reads alone. */
function toGrid(rows: Row[]): { grid: string[][]; headerRows: number; indexColumns: number } {
  const grid: string[][] = [];
  const pending: Array<{ text: string; left: number }> = []; // rowspans still covering a column
  rows.forEach((row, r) => {
    const line: string[] = [];
    let col = 0;
    const place = (): void => {
      for (;;) {
        const p = pending[col];
        if (p && p.left > 0) {
          line[col] = p.text;
          p.left--;
          col++;
        } else break;
      }
    };
    for (const cell of row.cells) {
      place();
      for (let k = 0; k < cell.colspan; k++) {
        line[col] = cell.text;
        if (cell.rowspan > 1) pending[col] = { text: cell.text, left: cell.rowspan - 1 };
        col++;
      }
    }
    place();
    // Columns still covered by a rowspan from above beyond the last cell of this row.
    for (let c = col; c < pending.length; c++) {
      const p = pending[c];
      if (p && p.left > 0) {
        line[c] = p.text;
        p.left--;
      }
    }
    grid[r] = Array.from(line, (v) => v ?? '');
  });
  let headerRows = rows.findIndex((r) => !r.inHead);
  if (headerRows < 0) headerRows = rows.length;
  if (headerRows === 0) {
    // No <thead>: leading rows made only of <th> cells are the header.
    while (headerRows < rows.length && rows[headerRows]!.cells.length > 0 && rows[headerRows]!.cells.every((c) => c.header)) headerRows++;
    if (headerRows === rows.length && rows.length > 1) headerRows = 1;
  }
  const firstBody = rows[headerRows];
  let indexColumns = 0;
  if (firstBody) {
    for (const c of firstBody.cells) {
      if (!c.header) break;
      indexColumns += c.colspan;
    }
  }
  return { grid, headerRows, indexColumns };
}

const NUMERIC = /^[-+−]?(?:\d[\d,_ ]*)?(?:\.\d*)?(?:e[-+]?\d+)?%?$|^(?:nan|NaN|NaT|None|<NA>|inf|-inf|\.\.\.|…)$/i;

function isNumeric(text: string): boolean {
  return text !== '' && /\d|nan|nat|none|<na>|inf|\.\.\.|…/i.test(text) && NUMERIC.test(text);
}

function cut(text: string, width: number): string {
  return text.length > width ? text.slice(0, Math.max(1, width - 1)) + '…' : text;
}

function renderTable(table: ParsedTable, options: TableTextOptions): string {
  const maxRows = Math.max(1, options.maxRows ?? 30);
  const maxColWidth = Math.max(2, options.maxColWidth ?? 24);
  const maxCols = Math.max(1, options.maxCols ?? 40);
  const { grid, headerRows } = toGrid(table.rows);
  const lines: string[] = [];
  if (table.caption) lines.push(table.caption);
  const width = grid.reduce((w, r) => Math.max(w, r.length), 0);
  if (width === 0) {
    lines.push('(empty table)');
    return lines.join('\n');
  }
  const shownCols = Math.min(width, maxCols);
  const header = grid.slice(0, headerRows);
  const body = grid.slice(headerRows);
  const shownBody = body.slice(0, maxRows);
  const shown = [...header, ...shownBody].map((r) =>
    Array.from({ length: shownCols }, (_, c) => cut(r[c] ?? '', maxColWidth)),
  );
  const rightAligned = Array.from({ length: shownCols }, (_, c) => {
    const values = shownBody.map((r) => r[c] ?? '').filter((v) => v !== '');
    return values.length > 0 && values.every(isNumeric);
  });
  const widths = Array.from({ length: shownCols }, (_, c) => shown.reduce((w, r) => Math.max(w, (r[c] ?? '').length), 1));
  const format = (r: string[]): string =>
    r
      .map((v, c) => (rightAligned[c] ? v.padStart(widths[c] ?? 0) : v.padEnd(widths[c] ?? 0)))
      .join('  ')
      .trimEnd();
  shown.slice(0, header.length).forEach((r) => lines.push(format(r)));
  if (header.length > 0) lines.push(widths.map((w) => '-'.repeat(w)).join('  '));
  shown.slice(header.length).forEach((r) => lines.push(format(r)));
  if (header.length > 0 && body.length === 0) lines.push('(no rows)');
  if (body.length > shownBody.length) lines.push(`… ${body.length - shownBody.length} more rows (${body.length} in all)`);
  if (width > shownCols) lines.push(`… ${width - shownCols} more columns (${width} in all)`);
  return lines.join('\n');
}

/** Text of tokens outside any table, with script/style content dropped. */
function plainTextOutside(tokens: Token[], from: number, to: number): string {
  let hidden = 0;
  let text = '';
  for (let i = from; i < to; i++) {
    const t = tokens[i];
    if (!t) continue;
    if (t.kind === 'open') {
      if (HIDDEN.has(t.name) && !t.selfClosing) hidden++;
      else if (BLOCK.has(t.name) || t.name === 'br') text += '\n';
    } else if (t.kind === 'close') {
      if (HIDDEN.has(t.name)) hidden = Math.max(0, hidden - 1);
      else if (BLOCK.has(t.name)) text += '\n';
    } else if (hidden === 0) text += t.text;
  }
  return text
    .split('\n')
    .map(collapse)
    .filter((l) => l !== '')
    .join('\n');
}

function findTable(tokens: Token[]): number {
  return tokens.findIndex((t) => t.kind === 'open' && t.name === 'table');
}

/**
 * The first table in `html` as aligned text: header rows, a rule, body rows (index columns included),
 * long cells cut with "…" and a "… N more rows" line past maxRows. Short text around the table (pandas'
 * "60 rows × 8 columns") is kept. Null when the HTML has no table or is mostly something else.
 */
export function htmlTableToText(html: string, options: TableTextOptions = {}): string | null {
  const tokens = tokenize(html);
  const start = findTable(tokens);
  if (start < 0) return null;
  const { table, end } = parseTable(tokens, start);
  const before = plainTextOutside(tokens, 0, start);
  const after = plainTextOutside(tokens, end, tokens.length);
  if (before.length + after.length > MAX_SURROUNDING_TEXT) return null;
  return [before, renderTable(table, options), after].filter((s) => s !== '').join('\n');
}

/** Data rows and columns of the first table in `html` (pandas' own "N rows × M columns" wins), or null. */
export function htmlTableShape(html: string): TableShape | null {
  const tokens = tokenize(html);
  const start = findTable(tokens);
  if (start < 0) return null;
  const { table, end } = parseTable(tokens, start);
  const stated = /(\d[\d,]*) rows × (\d[\d,]*) columns/.exec(plainTextOutside(tokens, end, tokens.length));
  if (stated?.[1] && stated[2]) {
    return { rows: parseInt(stated[1].replace(/,/g, ''), 10), columns: parseInt(stated[2].replace(/,/g, ''), 10) };
  }
  const { grid, headerRows, indexColumns } = toGrid(table.rows);
  const width = grid.reduce((w, r) => Math.max(w, r.length), 0);
  return { rows: Math.max(0, grid.length - headerRows), columns: Math.max(0, width - indexColumns) };
}

/**
 * Readable text for arbitrary HTML: block elements on their own lines, list items as "- ", links with
 * their target, tables rendered as aligned text, scripts and styles dropped.
 */
export function htmlToText(html: string, options: TableTextOptions = {}): string {
  const tokens = tokenize(html);
  let out = '';
  let hidden = 0;
  let pre = 0;
  const links: Array<{ href: string; at: number }> = [];
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i];
    if (!t) continue;
    if (t.kind === 'open') {
      if (HIDDEN.has(t.name) && !t.selfClosing) {
        hidden++;
        continue;
      }
      if (hidden > 0) continue;
      if (t.name === 'table') {
        const { table, end } = parseTable(tokens, i);
        out += '\n\u0000' + renderTable(table, options).replace(/\n/g, '\n\u0000') + '\n';
        i = end - 1;
        continue;
      }
      if (t.name === 'br') out += '\n';
      else if (t.name === 'li') out += '\n- ';
      else if (/^h[1-6]$/.test(t.name)) out += '\n' + '#'.repeat(Number(t.name[1])) + ' ';
      else if (t.name === 'pre') {
        pre++;
        out += '\n\u0000';
      } else if (t.name === 'img') out += t.attrs.alt ? `[image: ${t.attrs.alt}]` : '[image]';
      else if (t.name === 'a' && t.attrs.href && !/^(#|javascript:)/i.test(t.attrs.href)) links.push({ href: t.attrs.href, at: out.length });
      else if (BLOCK.has(t.name)) out += '\n';
    } else if (t.kind === 'close') {
      if (HIDDEN.has(t.name)) {
        hidden = Math.max(0, hidden - 1);
        continue;
      }
      if (hidden > 0) continue;
      if (t.name === 'pre') {
        pre = Math.max(0, pre - 1);
        out += '\n';
      } else if (t.name === 'a') {
        const link = links.pop();
        if (link) {
          const label = collapse(out.slice(link.at));
          if (label !== link.href) out += ` (${link.href})`;
        }
      } else if (BLOCK.has(t.name)) out += '\n';
    } else if (hidden === 0) {
      // Inside <pre> every line is marked so the whitespace collapse below leaves it alone.
      out += pre > 0 ? t.text.replace(/\n/g, '\n\u0000') : t.text.replace(/\s+/g, ' ');
    }
  }
  // Blank lines between blocks are dropped (they cost an agent tokens and say little); inside <pre> they stay.
  const lines: string[] = [];
  for (const line of out.split('\n')) {
    if (line.startsWith('\u0000')) lines.push(line.slice(1).trimEnd());
    else if (collapse(line) !== '') lines.push(collapse(line));
  }
  while (lines[0] === '') lines.shift();
  while (lines[lines.length - 1] === '') lines.pop();
  return lines.join('\n');
}
