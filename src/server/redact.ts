// Replaces secrets (API keys, tokens, private keys, passwords) with markers in what agents read, and puts them back when an edit sends markers back.
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { joinText, splitLines, type Notebook } from '../notebook/nbformat.js';
import { locateCell, type CellRef } from '../notebook/notebooks.js';
import { isPlainObject } from '../util/plain-object.js';
import type { Workspace } from './workspace.js';

/**
 * One kind of secret. A pattern with a `secret` named group replaces only that group (the key name before it
 * stays readable, e.g. `password=[REDACTED password]`); otherwise the whole match is replaced.
 */
interface SecretPattern {
  kind: string;
  regex: RegExp;
}

// Order matters: specific token shapes before the generic assignments that could also match them.
const PATTERNS: readonly SecretPattern[] = [
  // A private key cut off by an output budget has no END line: everything after BEGIN goes.
  { kind: 'private-key', regex: /-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----[\s\S]*?(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|$)/g },
  { kind: 'aws-access-key-id', regex: /\b(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|APKA)[A-Z0-9]{16}\b/g },
  { kind: 'aws-secret-access-key', regex: /(?<keep>aws_?secret_?access_?key["']?\s*[:=]\s*["']?)(?<secret>[A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])/gi },
  { kind: 'github-token', regex: /\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b/g },
  { kind: 'gitlab-token', regex: /\bgl(?:pat|ptt|dt|rt|soat|cbt)-[A-Za-z0-9_-]{20,}/g },
  { kind: 'slack-token', regex: /\bxox[abposr]-[A-Za-z0-9-]{10,}/g },
  { kind: 'slack-webhook', regex: /https:\/\/hooks\.slack\.com\/services\/[A-Za-z0-9/_-]{20,}/g },
  { kind: 'anthropic-api-key', regex: /\bsk-ant-[A-Za-z0-9_-]{20,}/g },
  { kind: 'openai-api-key', regex: /\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}/g },
  { kind: 'stripe-key', regex: /\b[rs]k_(?:live|test)_[A-Za-z0-9]{16,}/g },
  { kind: 'google-api-key', regex: /\bAIza[0-9A-Za-z_-]{35}/g },
  { kind: 'jwt', regex: /\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}/g },
  { kind: 'bearer-token', regex: /(?<keep>\bBearer\s+)(?<secret>[A-Za-z0-9._~+/-]{20,}=*)/g },
  { kind: 'url-password', regex: /(?<keep>\b[a-zA-Z][a-zA-Z0-9+.-]*:\/\/[^\s:/@]+:)(?<secret>[^\s@/]{3,})(?=@)/g },
  // Quoted values anywhere (code, JSON); unquoted ones only in `KEY=value` form (environment dumps, query strings),
  // so that `password: str` or `token = get_token()` in code stay readable.
  {
    kind: 'password',
    regex:
      /(?<keep>\b(?:[A-Za-z0-9]+_)*(?:password|passwd|pwd|secret|secret_key|client_secret|api_?key|access_token|auth_token|token)["']?\s*[:=]\s*)(?<secret>"[^"\n]{3,}"|'[^'\n]{3,}')|(?<keep2>\b(?:[A-Za-z0-9]+_)*(?:password|passwd|pwd|secret|secret_key|client_secret|api_?key|access_token|auth_token|token)=)(?<secret2>[^\s"'()[\]{}<>,;&]{3,})(?=$|[\s,;&])/gi,
  },
];

const MARKER_PREFIX = '[REDACTED ';

export type RedactionCounts = Map<string, number>;

/** Redacted text as plain runs and markers; each marker remembers the text it replaced (for `restoreRedactedSecrets`). */
type Piece = string | { marker: string; original: string };

function render(pieces: readonly Piece[]): string {
  return pieces.map((piece) => (typeof piece === 'string' ? piece : piece.marker)).join('');
}

/** What a marker stands for: the text with any marker inside it (from an earlier pattern) put back. */
function originalOf(pieces: readonly Piece[]): string {
  return pieces.map((piece) => (typeof piece === 'string' ? piece : piece.original)).join('');
}

interface Cut {
  start: number;
  end: number;
  marker: string;
}

/** Replaces the ranges `cuts` (sorted, disjoint, in rendered coordinates) by their markers. */
function applyCuts(pieces: readonly Piece[], cuts: readonly Cut[]): Piece[] {
  const out: Piece[] = [];
  let cutIndex = 0;
  let offset = 0;
  // Pieces (or parts of plain runs) that fall inside the cut being collected.
  let inside: Piece[] = [];
  for (const piece of pieces) {
    const length = typeof piece === 'string' ? piece.length : piece.marker.length;
    const pieceEnd = offset + length;
    if (typeof piece !== 'string') {
      const cut = cuts[cutIndex];
      // A marker a cut touches goes wholly into that cut's original (a cut never splits a marker).
      if (cut && cut.start < pieceEnd && cut.end > offset) {
        inside.push(piece);
        if (cut.end <= pieceEnd) {
          out.push({ marker: cut.marker, original: originalOf(inside) });
          inside = [];
          cutIndex += 1;
        }
      } else out.push(piece);
      offset = pieceEnd;
      continue;
    }
    let position = offset;
    while (position < pieceEnd) {
      const cut = cuts[cutIndex];
      if (!cut || cut.start >= pieceEnd) {
        out.push(piece.slice(position - offset));
        position = pieceEnd;
        break;
      }
      if (cut.start > position) {
        out.push(piece.slice(position - offset, cut.start - offset));
        position = cut.start;
      }
      const until = Math.min(cut.end, pieceEnd);
      inside.push(piece.slice(position - offset, until - offset));
      position = until;
      if (cut.end <= pieceEnd) {
        out.push({ marker: cut.marker, original: originalOf(inside) });
        inside = [];
        cutIndex += 1;
      }
    }
    offset = pieceEnd;
  }
  return out;
}

/** The redaction of `text` as pieces; `counts` gets how many of each kind were replaced. */
function redactPieces(text: string, counts: RedactionCounts): Piece[] {
  let pieces: Piece[] = [text];
  let current = text;
  for (const { kind, regex } of PATTERNS) {
    regex.lastIndex = 0;
    if (!regex.test(current)) continue;
    regex.lastIndex = 0;
    const marker = `${MARKER_PREFIX}${kind}]`;
    const cuts: Cut[] = [];
    for (const match of current.matchAll(regex)) {
      const groups = match.groups;
      const keep = groups?.['keep'] ?? groups?.['keep2'];
      const secret = groups?.['secret'] ?? groups?.['secret2'];
      if (keep === undefined || secret === undefined) {
        cuts.push({ start: match.index, end: match.index + match[0].length, marker });
        continue;
      }
      // Already redacted (a result passed through twice): leave it.
      if (secret.includes(MARKER_PREFIX)) continue;
      // The secret follows its key directly; its quotes stay around the marker.
      const quote = secret[0] === '"' || secret[0] === "'" ? 1 : 0;
      const start = match.index + keep.length + quote;
      cuts.push({ start, end: match.index + keep.length + secret.length - quote, marker });
    }
    if (cuts.length === 0) continue;
    counts.set(kind, (counts.get(kind) ?? 0) + cuts.length);
    pieces = applyCuts(pieces, cuts);
    current = render(pieces);
  }
  return pieces;
}

/** `text` with every secret replaced by `[REDACTED kind]`; `counts` gets how many of each kind were replaced. */
export function redactText(text: string, counts: RedactionCounts = new Map()): string {
  return render(redactPieces(text, counts));
}

/** A copy of a JSON-like value with every string redacted (object keys are left alone). */
export function redactValue(value: unknown, counts: RedactionCounts = new Map()): unknown {
  if (typeof value === 'string') return redactText(value, counts);
  if (Array.isArray(value)) return value.map((item) => redactValue(item, counts));
  if (value !== null && typeof value === 'object') {
    const copy: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value)) copy[key] = redactValue(item, counts);
    return copy;
  }
  return value;
}

/**
 * The tool result an agent gets: text content and structured content redacted. Images, audio and embedded
 * binary are left as they are (their bytes are not text an agent reads back as a secret).
 */
export function redactToolResult(result: CallToolResult, counts: RedactionCounts = new Map()): CallToolResult {
  const content = result.content.map((item) => (item.type === 'text' ? { ...item, text: redactText(item.text, counts) } : item));
  const redacted: CallToolResult = { ...result, content };
  if (result.structuredContent !== undefined) redacted.structuredContent = redactValue(result.structuredContent, counts) as Record<string, unknown>;
  return redacted;
}

/** A copy of nbformat text (a string, or lines each keeping its break) redacted as one text, in the same form. */
export function redactMultiline<T extends string | readonly string[]>(text: T, counts: RedactionCounts = new Map()): T {
  if (typeof text === 'string') return redactText(text, counts) as T;
  const joined = text.join('');
  const redacted = redactText(joined, counts);
  // A secret may span lines (a private key), so the lines are redacted together and split again.
  return (redacted === joined ? text : splitLines(redacted)) as unknown as T;
}

/** Mime types whose value is text a secret can sit in; images and other binary (base64) data are left alone. */
function isTextMime(mime: string): boolean {
  return mime.startsWith('text/') || mime === 'application/javascript' || mime === 'application/xml' || mime.endsWith('+xml');
}

function isJsonMime(mime: string): boolean {
  return mime === 'application/json' || mime.endsWith('+json');
}

function isText(value: unknown): value is string | string[] {
  return typeof value === 'string' || (Array.isArray(value) && value.every((line) => typeof line === 'string'));
}

/** Redacts the text fields of an output this code owns (and its own `data` object), replacing values in place. */
function redactOutputFields(output: Record<string, unknown>, counts: RedactionCounts): void {
  if (isText(output['text'])) output['text'] = redactMultiline(output['text'], counts);
  if (typeof output['evalue'] === 'string') output['evalue'] = redactText(output['evalue'], counts);
  const traceback = output['traceback'];
  // Entry by entry: each is one frame, and the list keeps its length.
  if (Array.isArray(traceback)) output['traceback'] = traceback.map((entry: unknown) => (typeof entry === 'string' ? redactText(entry, counts) : entry));
  const data = output['data'];
  if (!isPlainObject(data)) return;
  for (const [mime, value] of Object.entries(data)) {
    if (isTextMime(mime) && isText(value)) data[mime] = redactMultiline(value, counts);
    else if (isJsonMime(mime)) data[mime] = redactValue(value, counts);
  }
}

/**
 * A copy of one output — an nbformat output or the content of an iopub message (stream, display data, execute
 * result, error) — with secrets in its text redacted: stream text, error text, and the text and JSON mime types
 * of its data. Images stay as they are, as in tool results.
 */
export function redactOutput<T>(output: T, counts: RedactionCounts = new Map()): T {
  if (!isPlainObject(output)) return output;
  const copy: Record<string, unknown> = { ...output };
  if (isPlainObject(copy['data'])) copy['data'] = { ...copy['data'] };
  redactOutputFields(copy, counts);
  return copy as T;
}

/**
 * Redacts, in place, a notebook the caller owns (a private copy): cell sources and outputs, as tool results show
 * them. Changing values in place keeps the key order and number spellings, so it serializes like the file.
 */
export function redactNotebookInPlace(notebook: Notebook, counts: RedactionCounts = new Map()): Notebook {
  for (const cell of notebook.cells) {
    cell.source = redactMultiline(cell.source, counts);
    if (cell.cell_type !== 'code') continue;
    for (const output of cell.outputs) redactOutputFields(output as unknown as Record<string, unknown>, counts);
  }
  return notebook;
}

const MARKER = new RegExp(`\\[REDACTED (?:${PATTERNS.map((pattern) => pattern.kind).join('|')})\\]`, 'g');

/** Whether `text` holds a redaction marker (cheap; the check before `restoreRedactedSecrets`). */
export function containsRedactionMarker(text: string): boolean {
  MARKER.lastIndex = 0;
  return MARKER.test(text);
}

/** An edit whose markers cannot be put back to the secrets they stand for; the message says what to do. */
export class RedactedSourceError extends Error {}

interface MarkerAt {
  index: number;
  marker: string;
  /** The line the marker is on and how many of the same marker come before it there: where it sits, edits aside. */
  context: string;
}

function markersIn(text: string, found: Array<{ index: number; marker: string }>): MarkerAt[] {
  const perLine = new Map<string, number>();
  return found.map(({ index, marker }) => {
    const lineStart = text.lastIndexOf('\n', index - 1) + 1;
    const lineEnd = text.indexOf('\n', index);
    const key = `${lineStart}\u0000${marker}`;
    const ordinal = perLine.get(key) ?? 0;
    perLine.set(key, ordinal + 1);
    return { index, marker, context: `${ordinal}\u0000${text.slice(lineStart, lineEnd < 0 ? text.length : lineEnd)}` };
  });
}

function scanMarkers(text: string, base = 0): Array<{ index: number; marker: string }> {
  MARKER.lastIndex = 0;
  return [...text.matchAll(MARKER)].map((match) => ({ index: base + match.index, marker: match[0] }));
}

function distinct(values: Iterable<string>): string[] {
  return [...new Set(values)];
}

/**
 * An agent that was shown a cell with its secrets redacted and sends the source back (edited) would write the
 * markers over the secrets. This puts each marker in `proposed` back to the secret it stands for in `current`
 * (the cell's source now): the secret behind the same marker on the same line as the redacted source shows it,
 * else the only secret behind that marker in the cell. A marker with no secret behind it in the cell, or with
 * several that the edit made impossible to tell apart, throws RedactedSourceError (nothing is guessed).
 * A marker the cell itself already holds as text stays as it is.
 */
export function restoreRedactedSecrets(current: string, proposed: string): { source: string; restored: number } {
  if (!containsRedactionMarker(proposed)) return { source: proposed, restored: 0 };
  const pieces = redactPieces(current, new Map());
  const shown = render(pieces);
  const found: Array<{ index: number; marker: string }> = [];
  const originals: string[] = [];
  let offset = 0;
  for (const piece of pieces) {
    if (typeof piece === 'string') {
      for (const literal of scanMarkers(piece, offset)) {
        found.push(literal);
        originals.push(literal.marker);
      }
      offset += piece.length;
    } else {
      found.push({ index: offset, marker: piece.marker });
      originals.push(piece.original);
      offset += piece.marker.length;
    }
  }
  const known = markersIn(shown, found);
  const wanted = markersIn(proposed, scanMarkers(proposed));

  const absent = new Set<string>();
  const ambiguous = new Map<string, number>();
  const replacements: string[] = [];
  for (const at of wanted) {
    const same = known.flatMap((k, i) => (k.marker === at.marker ? [{ context: k.context, original: originals[i] ?? k.marker }] : []));
    const inPlace = distinct(same.filter((k) => k.context === at.context).map((k) => k.original));
    const anywhere = distinct(same.map((k) => k.original));
    const original = inPlace.length === 1 ? inPlace[0] : anywhere.length === 1 ? anywhere[0] : undefined;
    if (original !== undefined) replacements.push(original);
    else if (anywhere.length === 0) absent.add(at.marker);
    else ambiguous.set(at.marker, anywhere.length);
  }
  if (absent.size > 0 || ambiguous.size > 0) {
    const problems: string[] = [];
    if (absent.size > 0) {
      const list = [...absent].join(', ');
      problems.push(
        `it contains ${list}, but this cell holds no secret behind ${absent.size > 1 ? 'those markers' : 'that marker'}: it stands for a value hidden from you elsewhere (an output or another cell), and writing it would put the marker text itself into the notebook. Write the source without it, e.g. read the secret with os.environ["NAME"] or leave a placeholder for the user to fill in`,
      );
    }
    for (const [marker, count] of ambiguous) {
      problems.push(
        `it contains ${marker} where this cell holds ${count} different secrets behind that marker, and the lines showing it were changed, so which secret each stands for cannot be told. Keep every line that shows ${marker} exactly as read_cell returned it (each gets its secret back) and change only the other lines`,
      );
    }
    throw new RedactedSourceError(
      `The new source shows redacted values (secrets are hidden from agents on this server): ${problems.join('; and ')}. Nothing was changed.`,
    );
  }
  let restored = 0;
  let next = 0;
  MARKER.lastIndex = 0;
  const source = proposed.replace(MARKER, (marker) => {
    const original = replacements[next++] ?? marker;
    if (original !== marker) restored += 1;
    return original;
  });
  return { source, restored };
}

/**
 * The source edit_cell should write: when the workspace redacts and `source` shows markers, the cell's secrets put
 * back in their place (see restoreRedactedSecrets; throws RedactedSourceError when that cannot be done safely).
 */
export async function sourceForEdit(
  workspace: Workspace,
  notebookPath: string,
  ref: CellRef,
  source: string | undefined,
): Promise<{ source: string | undefined; restored: number }> {
  if (source === undefined || !workspace.config.redact || !containsRedactionMarker(source)) return { source, restored: 0 };
  const read = await workspace.notebooks.read(notebookPath);
  return restoreRedactedSecrets(joinText(locateCell(read.notebook, ref, read.path).cell.source), source);
}

/**
 * The note insert_cell and create_notebook add when new source holds redaction markers: a new cell has no secret
 * behind them to put back, so the agent learns that the marker, not the secret, was stored.
 */
export function newSourceMarkerNote(workspace: Workspace, sources: readonly string[]): string {
  if (!workspace.config.redact) return '';
  const markers = sources.reduce((count, source) => count + scanMarkers(source).length, 0);
  if (markers === 0) return '';
  return ` (note: ${markers} redaction marker(s) such as [REDACTED …] were stored as typed: the secret they once hid is not known here. Read the secret where it lives, e.g. os.environ, or edit the cell that holds it with edit_cell)`;
}

/** The note edit_cell adds to its result when it put secrets back. */
export function restoredNote(restored: number): string {
  return restored > 0 ? ` (${restored} redacted secret(s) kept as they were in the cell)` : '';
}
