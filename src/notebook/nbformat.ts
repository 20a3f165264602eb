// Reads, validates and writes nbformat 4.x notebooks so that an unchanged notebook round-trips byte for byte.
import { randomBytes } from 'node:crypto';
import { isPlainObject } from '../util/plain-object.js';

// ---------------------------------------------------------------------------------------------
// The model

export type JsonPrimitive = string | number | boolean | null;
export type JsonValue = JsonPrimitive | JsonValue[] | JsonObject;
export type JsonObject = { [key: string]: JsonValue };

/** nbformat stores text either as one string or as a list of lines that each keep their "\n". */
export type MultilineString = string | string[];

/** mime type → data. Text mime types hold a MultilineString; `application/json` and `*+json` hold any JSON. */
export type MimeBundle = { [mime: string]: JsonValue };

export type StreamOutput = { output_type: 'stream'; name: string; text: MultilineString };
export type DisplayDataOutput = { output_type: 'display_data'; data: MimeBundle; metadata: JsonObject };
export type ExecuteResultOutput = {
  output_type: 'execute_result';
  execution_count: number | null;
  data: MimeBundle;
  metadata: JsonObject;
};
export type ErrorOutput = { output_type: 'error'; ename: string; evalue: string; traceback: string[] };
export type Output = StreamOutput | DisplayDataOutput | ExecuteResultOutput | ErrorOutput;

export type CellType = 'code' | 'markdown' | 'raw';

export type CodeCell = {
  cell_type: 'code';
  id: string;
  source: MultilineString;
  metadata: JsonObject;
  outputs: Output[];
  execution_count: number | null;
};
export type MarkdownCell = {
  cell_type: 'markdown';
  id: string;
  source: MultilineString;
  metadata: JsonObject;
  attachments?: { [filename: string]: MimeBundle };
};
export type RawCell = {
  cell_type: 'raw';
  id: string;
  source: MultilineString;
  metadata: JsonObject;
  attachments?: { [filename: string]: MimeBundle };
};
export type Cell = CodeCell | MarkdownCell | RawCell;

export type Notebook = {
  nbformat: 4;
  nbformat_minor: number;
  metadata: JsonObject;
  cells: Cell[];
};

export interface ParsedNotebook {
  notebook: Notebook;
  /** True when parsing changed the document (cell ids added or repaired, minor version raised): a save changes bytes. */
  upgraded: boolean;
  /** One human-readable line per change made while parsing. */
  upgrades: string[];
}

export interface KernelspecInfo {
  name: string;
  display_name: string;
  language?: string;
}

export class NotebookFormatError extends Error {
  override readonly name = 'NotebookFormatError';
  constructor(
    message: string,
    readonly path: string,
    readonly line?: number,
    readonly column?: number,
  ) {
    super(message);
  }
}

/** An edit that cannot be applied as asked; the message says why and what to do instead. */
export class InvalidEditError extends Error {
  override readonly name = 'InvalidEditError';
}

// ---------------------------------------------------------------------------------------------
// Byte-stability side tables.
//
// JSON.parse loses two things a byte-stable writer needs: the spelling of numbers (`1.0`, `1e5`) and the
// order of integer-like keys (JS objects list them first, ascending). Rather than wrap every value, the
// parser records, per container object, only what the plain JS value cannot carry. Both tables are weak:
// an object nobody holds takes its notes with it.

interface NumberLexeme {
  value: number;
  lexeme: string;
}
/** container → (key or array index) → the number as spelled in the file, when our formatting would differ. */
const numberLexemes = new WeakMap<object, Map<string, NumberLexeme>>();
/** object → its keys in file order, recorded only when that order is not sorted (sorted is the default). */
const keyOrders = new WeakMap<object, readonly string[]>();

function setKey(obj: JsonObject, key: string, value: JsonValue): void {
  if (key === '__proto__') {
    // A plain assignment would change the prototype instead of storing data.
    Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
  } else {
    obj[key] = value;
  }
}

/** Python's `sorted()` order for str: by code point (JS `<` compares UTF-16 units, which differs above U+D800). */
export function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    if (x >= 0xd800 && y >= 0xd800) {
      // Surrogates (astral code points) sort after U+E000–U+FFFF.
      x = x < 0xe000 ? x + 0x2000 : x - 0x800;
      y = y < 0xe000 ? y + 0x2000 : y - 0x800;
    }
    return x - y;
  }
  return a.length - b.length;
}

function isSorted(keys: readonly string[]): boolean {
  for (let i = 1; i < keys.length; i++) if (compareCodePoints(keys[i - 1]!, keys[i]!) > 0) return false;
  return true;
}

// ---------------------------------------------------------------------------------------------
// Number formatting: Python's json.dumps spelling (int → digits, float → repr).

/**
 * How Python would print this number. A JS number that is integral is written as a Python int (a float
 * like `1.0` read from a file keeps its spelling through the lexeme table instead).
 */
export function formatNumber(x: number): string {
  if (Number.isNaN(x)) return 'NaN';
  if (x === Infinity) return 'Infinity';
  if (x === -Infinity) return '-Infinity';
  if (Number.isInteger(x)) return Math.abs(x) < 1e21 ? String(x === 0 ? 0 : x) : BigInt(x).toString();
  // Python float repr: shortest round-trip digits, scientific when exponent < -4 or >= 16.
  const [mantissa = '', expText = '0'] = x.toExponential().split('e');
  const exp = Number(expText);
  const negative = mantissa.startsWith('-');
  const digits = mantissa.replace('-', '').replace('.', '');
  const sign = negative ? '-' : '';
  if (exp < -4 || exp >= 16) {
    const frac = digits.length > 1 ? `.${digits.slice(1)}` : '';
    const e = Math.abs(exp) < 10 ? `0${Math.abs(exp)}` : String(Math.abs(exp));
    return `${sign}${digits[0]}${frac}e${exp < 0 ? '-' : '+'}${e}`;
  }
  if (exp < 0) return `${sign}0.${'0'.repeat(-exp - 1)}${digits}`;
  const intPart = digits.slice(0, exp + 1).padEnd(exp + 1, '0');
  const fracPart = digits.slice(exp + 1);
  return `${sign}${intPart}.${fracPart || '0'}`;
}

// ---------------------------------------------------------------------------------------------
// JSON parser that keeps number spellings and key order (accepts what Python's json.loads accepts).

class JsonSyntaxError extends Error {
  constructor(
    message: string,
    readonly offset: number,
  ) {
    super(message);
  }
}

const NUMBER_RE = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;

class JsonParser {
  private i = 0;
  constructor(private readonly s: string) {}

  parseDocument(): JsonValue {
    this.ws();
    const v = this.value();
    this.ws();
    if (this.i < this.s.length) throw this.error(`unexpected ${this.describe()} after the end of the JSON document`);
    return v;
  }

  private error(msg: string, at = this.i): JsonSyntaxError {
    return new JsonSyntaxError(msg, at);
  }

  private describe(at = this.i): string {
    if (at >= this.s.length) return 'end of file';
    return `character ${JSON.stringify(this.s[at])}`;
  }

  private ws(): void {
    const s = this.s;
    let i = this.i;
    for (;;) {
      const c = s.charCodeAt(i);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) i++;
      else break;
    }
    this.i = i;
  }

  private value(): JsonValue {
    const c = this.s[this.i];
    switch (c) {
      case '{':
        return this.object();
      case '[':
        return this.array();
      case '"':
        return this.string();
      case 't':
        return this.literal('true', true);
      case 'f':
        return this.literal('false', false);
      case 'n':
        return this.literal('null', null);
      case 'N':
        return this.literal('NaN', NaN);
      case 'I':
        return this.literal('Infinity', Infinity);
      case undefined:
        throw this.error('unexpected end of file (the file looks truncated)');
      default:
        if (c === '-' && this.s.startsWith('-Infinity', this.i)) return this.literal('-Infinity', -Infinity);
        if (c === '-' || (c >= '0' && c <= '9')) return this.number();
        throw this.error(`unexpected ${this.describe()} where a value was expected`);
    }
  }

  private literal<T extends JsonValue>(word: string, v: T): T {
    if (!this.s.startsWith(word, this.i)) throw this.error(`unexpected ${this.describe()} where a value was expected`);
    this.i += word.length;
    return v;
  }

  /** Set by number(): the spelling to keep for the number just read, when our formatting would differ. */
  private pendingLexeme: string | undefined;

  private number(): number {
    NUMBER_RE.lastIndex = this.i;
    const m = NUMBER_RE.exec(this.s);
    if (!m) throw this.error(`invalid number`);
    const lexeme = m[0];
    this.i += lexeme.length;
    const v = Number(lexeme);
    if (formatNumber(v) !== lexeme) this.pendingLexeme = lexeme;
    return v;
  }

  private takeLexeme(container: object, key: string, v: JsonValue): void {
    const lexeme = this.pendingLexeme;
    if (lexeme === undefined || typeof v !== 'number') return;
    this.pendingLexeme = undefined;
    let map = numberLexemes.get(container);
    if (!map) numberLexemes.set(container, (map = new Map()));
    map.set(key, { value: v, lexeme });
  }

  private object(): JsonObject {
    const obj: JsonObject = {};
    const order: string[] = [];
    this.i++; // {
    this.ws();
    if (this.s[this.i] === '}') {
      this.i++;
      return obj;
    }
    for (;;) {
      if (this.s[this.i] !== '"') throw this.error(`unexpected ${this.describe()} where a property name in double quotes was expected`);
      const key = this.string();
      this.ws();
      if (this.s[this.i] !== ':') throw this.error(`unexpected ${this.describe()} where ':' was expected after property "${key}"`);
      this.i++;
      this.ws();
      const v = this.value();
      // Duplicate keys: last value wins, first position stays (as in Python).
      if (!Object.prototype.hasOwnProperty.call(obj, key)) order.push(key);
      setKey(obj, key, v);
      this.takeLexeme(obj, key, v);
      this.ws();
      const c = this.s[this.i];
      if (c === ',') {
        this.i++;
        this.ws();
        continue;
      }
      if (c === '}') {
        this.i++;
        break;
      }
      throw this.error(`unexpected ${this.describe()} where ',' or '}' was expected`);
    }
    if (!isSorted(order)) keyOrders.set(obj, order);
    return obj;
  }

  private array(): JsonValue[] {
    const arr: JsonValue[] = [];
    this.i++; // [
    this.ws();
    if (this.s[this.i] === ']') {
      this.i++;
      return arr;
    }
    for (;;) {
      const v = this.value();
      this.takeLexeme(arr, String(arr.length), v);
      arr.push(v);
      this.ws();
      const c = this.s[this.i];
      if (c === ',') {
        this.i++;
        this.ws();
        continue;
      }
      if (c === ']') {
        this.i++;
        return arr;
      }
      throw this.error(`unexpected ${this.describe()} where ',' or ']' was expected`);
    }
  }

  private string(): string {
    const s = this.s;
    const start = this.i;
    let i = start + 1;
    let out = '';
    let runStart = i;
    for (;;) {
      const c = s.charCodeAt(i);
      if (c === 0x22) break; // "
      if (Number.isNaN(c)) throw this.error('unterminated string (the file looks truncated)', start);
      if (c < 0x20) throw this.error(`control character U+${c.toString(16).padStart(4, '0')} inside a string (it must be escaped)`, i);
      if (c !== 0x5c) {
        i++;
        continue;
      }
      out += s.slice(runStart, i);
      const e = s[i + 1];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          const hex = s.slice(i + 2, i + 6);
          if (!/^[0-9a-fA-F]{4}$/.test(hex)) throw this.error('invalid \\u escape in a string', i);
          out += String.fromCharCode(parseInt(hex, 16));
          i += 4;
          break;
        }
        default:
          throw this.error(`invalid escape ${JSON.stringify('\\' + (e ?? ''))} in a string`, i);
      }
      i += 2;
      runStart = i;
    }
    out += s.slice(runStart, i);
    this.i = i + 1;
    return out;
  }
}

/** Parses JSON text like Python's json.loads, remembering what a byte-stable re-serialization needs. */
export function parseJson(text: string): JsonValue {
  return new JsonParser(text).parseDocument();
}

// ---------------------------------------------------------------------------------------------
// Serializer: json.dumps(x, indent=1, ensure_ascii=False, separators=(',', ': ')).

const NEEDS_ESCAPE = /[\x00-\x1f"\\]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
const NEEDS_ESCAPE_G = new RegExp(NEEDS_ESCAPE.source, 'g');
const SHORT_ESCAPES: Record<string, string> = {
  '"': '\\"',
  '\\': '\\\\',
  '\b': '\\b',
  '\f': '\\f',
  '\n': '\\n',
  '\r': '\\r',
  '\t': '\\t',
};

/** A JSON string literal as Python writes it with ensure_ascii=False (lone surrogates escaped so no data is lost). */
export function quoteString(s: string): string {
  if (!NEEDS_ESCAPE.test(s)) return `"${s}"`;
  return `"${s.replace(NEEDS_ESCAPE_G, (ch) => SHORT_ESCAPES[ch] ?? `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`)}"`;
}

function orderedKeys(obj: object): string[] {
  const present = Object.keys(obj).filter((k) => (obj as Record<string, unknown>)[k] !== undefined);
  const recorded = keyOrders.get(obj);
  if (!recorded) return present.sort(compareCodePoints);
  const presentSet = new Set(present);
  const kept = recorded.filter((k) => presentSet.has(k));
  const keptSet = new Set(kept);
  const added = present.filter((k) => !keptSet.has(k)).sort(compareCodePoints);
  return kept.concat(added);
}

function writeValue(v: unknown, container: object | null, key: string, indent: string, out: string[]): void {
  if (v === null || v === undefined) {
    out.push('null');
    return;
  }
  switch (typeof v) {
    case 'string':
      out.push(quoteString(v));
      return;
    case 'boolean':
      out.push(v ? 'true' : 'false');
      return;
    case 'number': {
      const lex = container ? numberLexemes.get(container)?.get(key) : undefined;
      out.push(lex && Object.is(lex.value, v) ? lex.lexeme : formatNumber(v));
      return;
    }
    case 'object':
      break;
    default:
      throw new TypeError(`cannot write a ${typeof v} value into a notebook (at key ${JSON.stringify(key)})`);
  }
  const inner = indent + ' ';
  if (Array.isArray(v)) {
    if (v.length === 0) {
      out.push('[]');
      return;
    }
    out.push('[');
    for (let i = 0; i < v.length; i++) {
      out.push(i === 0 ? '\n' : ',\n', inner);
      writeValue(v[i], v, String(i), inner, out);
    }
    out.push('\n', indent, ']');
    return;
  }
  const keys = orderedKeys(v);
  if (keys.length === 0) {
    out.push('{}');
    return;
  }
  out.push('{');
  let first = true;
  for (const k of keys) {
    out.push(first ? '\n' : ',\n', inner, quoteString(k), ': ');
    first = false;
    writeValue((v as Record<string, unknown>)[k], v, k, inner, out);
  }
  out.push('\n', indent, '}');
}

/** Any JSON value as Python's json.dumps(indent=1, ensure_ascii=False) would write it, without the trailing newline. */
export function stringifyJson(value: unknown): string {
  const out: string[] = [];
  writeValue(value, null, '', '', out);
  return out.join('');
}

/** The bytes nbformat.writes would produce for this notebook (keeping the key order and number spellings read). */
export function serializeNotebook(nb: Notebook): string {
  return stringifyJson(nb) + '\n';
}

/** A deep copy that keeps the byte-stability notes (number spellings, key order). */
export function cloneJson<T>(value: T): T {
  if (value === null || typeof value !== 'object') return value;
  let copy: object;
  if (Array.isArray(value)) {
    copy = value.map((x: unknown) => cloneJson(x));
  } else {
    const obj: JsonObject = {};
    for (const k of Object.keys(value)) setKey(obj, k, cloneJson((value as Record<string, JsonValue>)[k]!));
    copy = obj;
    const order = keyOrders.get(value);
    if (order) keyOrders.set(copy, order);
  }
  const lex = numberLexemes.get(value);
  if (lex) numberLexemes.set(copy, lex); // never mutated after parsing, so sharing is safe
  return copy as T;
}

// ---------------------------------------------------------------------------------------------
// Text helpers

/** The text of a MultilineString. */
export function joinText(x: MultilineString | null | undefined): string {
  if (x === null || x === undefined) return '';
  return typeof x === 'string' ? x : x.join('');
}

// Python's str.splitlines() boundaries, which nbformat uses when it writes.
const LINE_BREAK = /\r\n|[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]/g;

/** nbformat's on-disk form of text: lines that each keep their line break (Python's `splitlines(True)`). */
export function splitLines(text: string): string[] {
  const out: string[] = [];
  let start = 0;
  for (const m of text.matchAll(LINE_BREAK)) {
    const end = m.index + m[0].length;
    out.push(text.slice(start, end));
    start = end;
  }
  if (start < text.length) out.push(text.slice(start));
  return out;
}

const SPLIT_NON_TEXT_MIMES = new Set(['application/javascript', 'image/svg+xml']);

function splitMimeBundle(data: MimeBundle): void {
  for (const [mime, value] of Object.entries(data)) {
    if (typeof value === 'string' && (mime.startsWith('text/') || SPLIT_NON_TEXT_MIMES.has(mime))) data[mime] = splitLines(value);
  }
}

/** Puts an output's text fields in the form nbformat writes (lists of lines); changes it in place and returns it. */
export function outputToDiskForm(output: Output): Output {
  if (output.output_type === 'stream' && typeof output.text === 'string') output.text = splitLines(output.text);
  else if (output.output_type === 'display_data' || output.output_type === 'execute_result') splitMimeBundle(output.data);
  return output;
}

/** Sets a cell's source, keeping the on-disk form when the text is unchanged so unchanged cells keep their bytes. */
export function setCellSource(cell: Cell, text: string): void {
  if (joinText(cell.source) === text) return;
  cell.source = splitLines(text);
}

/** The notebook's kernelspec metadata, when present and well-formed. */
export function kernelspecOf(nb: Notebook): KernelspecInfo | undefined {
  const ks = nb.metadata['kernelspec'];
  if (!isObject(ks) || typeof ks['name'] !== 'string') return undefined;
  const info: KernelspecInfo = {
    name: ks['name'],
    display_name: typeof ks['display_name'] === 'string' ? ks['display_name'] : ks['name'],
  };
  if (typeof ks['language'] === 'string') info.language = ks['language'];
  return info;
}

// ---------------------------------------------------------------------------------------------
// Cell ids

const CELL_ID_RE = /^[a-zA-Z0-9_-]{1,64}$/;

export function isValidCellId(id: unknown): id is string {
  return typeof id === 'string' && CELL_ID_RE.test(id);
}

/** A fresh cell id like nbformat's (8 hex characters), unique among `taken`. */
export function newCellId(taken?: ReadonlySet<string>): string {
  for (;;) {
    const id = randomBytes(4).toString('hex');
    if (!taken?.has(id)) return id;
  }
}

// ---------------------------------------------------------------------------------------------
// Creating notebooks and cells

export interface NewNotebookOptions {
  kernelName?: string;
  displayName?: string;
  language?: string;
}

/** An empty nbformat 4.5 notebook with kernelspec and language_info metadata, as Jupyter creates one. */
export function newNotebook(opts: NewNotebookOptions = {}): Notebook {
  const name = opts.kernelName ?? 'python3';
  const language = opts.language ?? 'python';
  const displayName = opts.displayName ?? (name === 'python3' ? 'Python 3 (ipykernel)' : name);
  return {
    cells: [],
    metadata: {
      kernelspec: { display_name: displayName, language, name },
      language_info: { name: language },
    },
    nbformat: 4,
    nbformat_minor: 5,
  };
}

/** A new cell as nbformat's new_*_cell makes it; pass the notebook so the id is unique in it. */
export function newCell(type: CellType, source: string, nb?: Notebook): Cell {
  const id = newCellId(nb ? new Set(nb.cells.map((c) => c.id)) : undefined);
  const lines = splitLines(source);
  if (type === 'code') return { cell_type: 'code', execution_count: null, id, metadata: {}, outputs: [], source: lines };
  return { cell_type: type, id, metadata: {}, source: lines };
}

/**
 * Changes a cell's type in place, as Jupyter does: code cells gain `outputs` and `execution_count`, other
 * types lose them (and our execution provenance). Attachments cannot live on a code cell, so a cell holding
 * some is refused rather than silently losing them.
 */
export function changeCellType(cell: Cell, to: CellType): Cell {
  if (cell.cell_type === to) return cell;
  const loose = cell as unknown as Record<string, unknown>;
  if (to === 'code') {
    const att = loose['attachments'];
    if (isObject(att) && Object.keys(att).length > 0) {
      throw new InvalidEditError(
        `cell '${cell.id}' has attachments (${Object.keys(att).join(', ')}), which a code cell cannot hold; ` +
          'remove the attachments first or keep the cell as markdown/raw',
      );
    }
    delete loose['attachments'];
    loose['outputs'] = [];
    loose['execution_count'] = null;
  } else {
    delete loose['outputs'];
    delete loose['execution_count'];
    delete cell.metadata['mcp_jupyter'];
  }
  loose['cell_type'] = to;
  return cell;
}

// ---------------------------------------------------------------------------------------------
// Parsing + validation

function isObject(v: unknown): v is JsonObject {
  return isPlainObject(v);
}

function isMultiline(v: unknown): v is MultilineString {
  return typeof v === 'string' || (Array.isArray(v) && v.every((x) => typeof x === 'string'));
}

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'an object';
  if (typeof v === 'string') return `the string ${JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v)}`;
  return `${typeof v} ${String(v)}`;
}

function lineColumn(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  for (let i = text.indexOf('\n'); i !== -1 && i < offset; i = text.indexOf('\n', i + 1)) {
    line++;
    lineStart = i + 1;
  }
  return { line, column: offset - lineStart + 1 };
}

const FIX_HINT = 'The file was not changed; fix it in an editor (or restore it from version control) and try again.';

/**
 * Parses and validates a notebook file's text. Repairs only what nbformat itself repairs (missing or
 * duplicate cell ids, and the minor version that comes with ids) plus empty defaults a reader cannot
 * misinterpret; anything else that is wrong is a NotebookFormatError saying what, where, and what to do.
 */
export function parseNotebook(text: string, pathForErrors: string): ParsedNotebook {
  const where = pathForErrors;
  const fail = (what: string, hint = FIX_HINT): never => {
    throw new NotebookFormatError(`${where} is not a valid Jupyter notebook: ${what}. ${hint}`, where);
  };

  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1); // a UTF-8 BOM some editors add
  let doc: JsonValue;
  try {
    doc = parseJson(text);
  } catch (e) {
    if (e instanceof JsonSyntaxError) {
      const { line, column } = lineColumn(text, e.offset);
      throw new NotebookFormatError(
        `${where} is not valid JSON: ${e.message} at line ${line}, column ${column}. ${FIX_HINT}`,
        where,
        line,
        column,
      );
    }
    if (e instanceof RangeError) fail('its JSON is nested too deeply to read');
    throw e;
  }

  if (!isObject(doc)) fail(`the top level is ${typeName(doc)}, not a JSON object`);
  const root = doc as JsonObject;
  const major = root['nbformat'];
  if (major === undefined) fail('it has no "nbformat" field, so it is not a Jupyter notebook');
  if (typeof major !== 'number' || !Number.isInteger(major)) fail(`"nbformat" is ${typeName(major)}, not an integer`);
  if ((major as number) < 4) {
    fail(
      `it uses nbformat ${String(major)}, which this server does not edit`,
      `Convert it with \`jupyter nbconvert --to notebook --nbformat 4 --inplace ${where}\` (the file was not changed).`,
    );
  }
  if (major !== 4) {
    fail(
      `it uses nbformat ${String(major)}, a major version this server does not know (it reads nbformat 4)`,
      'Open it with the Jupyter version that wrote it, or save it as nbformat 4 (the file was not changed).',
    );
  }
  const minor = root['nbformat_minor'];
  if (typeof minor !== 'number' || !Number.isInteger(minor) || minor < 0) {
    fail(minor === undefined ? 'it has no "nbformat_minor" field' : `"nbformat_minor" is ${typeName(minor)}, not a non-negative integer`);
  }
  const metadata = root['metadata'];
  if (!isObject(metadata)) fail(metadata === undefined ? 'it has no "metadata" object' : `"metadata" is ${typeName(metadata)}, not an object`);
  const cells = root['cells'];
  if (!Array.isArray(cells)) fail(cells === undefined ? 'it has no "cells" list' : `"cells" is ${typeName(cells)}, not a list`);

  const upgrades: string[] = [];
  let filledDefaults = 0;
  (cells as JsonValue[]).forEach((cell, i) => {
    const at = `cells[${i}]`;
    if (!isObject(cell)) fail(`${at} is ${typeName(cell)}, not an object`);
    const c = cell as JsonObject;
    const type = c['cell_type'];
    if (type === undefined) fail(`${at} has no "cell_type" (expected "code", "markdown" or "raw")`);
    if (type !== 'code' && type !== 'markdown' && type !== 'raw') fail(`${at} has cell_type ${typeName(type)} (expected "code", "markdown" or "raw")`);
    if (c['source'] === undefined) fail(`${at} has no "source"`);
    if (!isMultiline(c['source'])) fail(`${at}.source is ${typeName(c['source'])}, not a string or a list of strings`);
    if (c['metadata'] === undefined) {
      c['metadata'] = {};
      filledDefaults++;
    } else if (!isObject(c['metadata'])) fail(`${at}.metadata is ${typeName(c['metadata'])}, not an object`);
    if (c['attachments'] !== undefined) validateAttachments(c['attachments'], `${at}.attachments`, fail);
    if (type === 'code') {
      if (c['execution_count'] === undefined) {
        c['execution_count'] = null;
        filledDefaults++;
      } else if (!isCount(c['execution_count'])) fail(`${at}.execution_count is ${typeName(c['execution_count'])}, not a non-negative integer or null`);
      if (c['outputs'] === undefined) {
        c['outputs'] = [];
        filledDefaults++;
      } else if (!Array.isArray(c['outputs'])) fail(`${at}.outputs is ${typeName(c['outputs'])}, not a list`);
      (c['outputs'] as JsonValue[]).forEach((o, j) => {
        if (validateOutput(o, `${at}.outputs[${j}]`, fail)) filledDefaults++;
      });
    }
  });
  if (filledDefaults > 0) upgrades.push(`filled in ${filledDefaults} missing empty field(s) (metadata, outputs, execution_count)`);

  // Cell ids (nbformat 4.5): add the missing ones, replace invalid and duplicate ones, then say so.
  const nbCells = cells as unknown as Cell[];
  const taken = new Set<string>();
  for (const cell of nbCells) if (isValidCellId(cell.id)) taken.add(cell.id);
  const seen = new Set<string>();
  let added = 0;
  const replaced: string[] = [];
  for (const cell of nbCells) {
    const id: unknown = cell.id;
    if (isValidCellId(id) && !seen.has(id)) {
      seen.add(id);
      continue;
    }
    const fresh = newCellId(taken);
    taken.add(fresh);
    seen.add(fresh);
    if (id === undefined) added++;
    else replaced.push(`${typeof id === 'string' ? `'${id}'` : typeName(id)} → '${fresh}'`);
    cell.id = fresh;
  }
  if (added > 0) upgrades.push(`gave ${added} cell(s) without an id a new id`);
  if (replaced.length > 0) upgrades.push(`replaced duplicate or invalid cell id(s): ${replaced.join(', ')}`);
  if ((minor as number) < 5) {
    upgrades.push(`raised nbformat_minor from ${String(minor)} to 5 (the version with cell ids)`);
    root['nbformat_minor'] = 5;
  }

  return { notebook: root as unknown as Notebook, upgraded: upgrades.length > 0, upgrades };
}

function isCount(v: unknown): boolean {
  return v === null || (typeof v === 'number' && Number.isInteger(v) && v >= 0);
}

function validateMimeBundle(v: unknown, at: string, fail: (what: string) => never): void {
  if (!isObject(v)) fail(`${at} is ${typeName(v)}, not an object of mime type → data`);
  for (const [mime, data] of Object.entries(v as JsonObject)) {
    if (/^application\/(.*\+)?json$/.test(mime)) continue;
    if (!isMultiline(data)) fail(`${at}["${mime}"] is ${typeName(data)}, not a string or a list of strings`);
  }
}

function validateAttachments(v: unknown, at: string, fail: (what: string) => never): void {
  if (!isObject(v)) fail(`${at} is ${typeName(v)}, not an object`);
  for (const [name, bundle] of Object.entries(v as JsonObject)) validateMimeBundle(bundle, `${at}["${name}"]`, fail);
}

/** Validates one output; returns true when it filled in a missing empty `metadata`. */
function validateOutput(o: unknown, at: string, fail: (what: string) => never): boolean {
  if (!isObject(o)) fail(`${at} is ${typeName(o)}, not an object`);
  const out = o as JsonObject;
  const type = out['output_type'];
  switch (type) {
    case 'stream':
      if (typeof out['name'] !== 'string') fail(`${at} (stream) has no "name" string (stdout or stderr)`);
      if (!isMultiline(out['text'])) fail(`${at}.text is ${typeName(out['text'])}, not a string or a list of strings`);
      return false;
    case 'display_data':
    case 'execute_result': {
      validateMimeBundle(out['data'], `${at}.data`, fail);
      if (type === 'execute_result' && !isCount(out['execution_count'])) {
        fail(`${at}.execution_count is ${typeName(out['execution_count'])}, not a non-negative integer or null`);
      }
      if (out['metadata'] === undefined) {
        out['metadata'] = {};
        return true;
      }
      if (!isObject(out['metadata'])) fail(`${at}.metadata is ${typeName(out['metadata'])}, not an object`);
      return false;
    }
    case 'error':
      if (typeof out['ename'] !== 'string') fail(`${at} (error) has no "ename" string`);
      if (typeof out['evalue'] !== 'string') fail(`${at} (error) has no "evalue" string`);
      if (!Array.isArray(out['traceback']) || !out['traceback'].every((x) => typeof x === 'string')) {
        fail(`${at}.traceback is not a list of strings`);
      }
      return false;
    case undefined:
      return fail(`${at} has no "output_type" (expected stream, display_data, execute_result or error)`);
    default:
      return fail(`${at} has output_type ${typeName(type)} (expected stream, display_data, execute_result or error)`);
  }
}
