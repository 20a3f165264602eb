// Turns a cell's Jupyter outputs into MCP tool-result content that fits the text and image budgets.

import { stripAnsi } from './ansi.js';
import { htmlTableShape, htmlTableToText, htmlToText } from './html-table.js';
import { downscaleImage, imageSize, isRasterMime, type RasterMime } from './images.js';

// ---- Input: the parts of nbformat 4 outputs this module reads (the full model lives in nbformat.ts).


export interface StreamOutput {
  output_type: 'stream';
  name: 'stdout' | 'stderr';
  text: string | string[];
}

export interface DisplayOutput {
  output_type: 'display_data' | 'execute_result';
  /** Mime type → text (a string or nbformat's list of lines) or, for JSON mime types, the parsed value. */
  data: Record<string, unknown>;
  metadata?: Record<string, unknown>;
  execution_count?: number | null;
}

export interface ErrorOutput {
  output_type: 'error';
  ename: string;
  evalue: string;
  traceback: string[];
}

export type NotebookOutput = StreamOutput | DisplayOutput | ErrorOutput;

// ---- Output: MCP content blocks, as plain objects.

export interface TextContent {
  type: 'text';
  text: string;
}

export interface ImageContent {
  type: 'image';
  /** Base64, no line breaks. */
  data: string;
  mimeType: string;
}

export type McpContent = TextContent | ImageContent;

/** Stores bytes or text under the notebook's asset folder and answers with the workspace-relative path. */
export type SaveAsset = (data: Buffer | string, kind: 'text' | 'image', ext: string) => Promise<string>;

export interface RenderOptions {
  /** Upper bound on all text in the result, markers included (default 20,000). */
  maxOutputChars?: number;
  /** Upper bound on each image content's base64 `data`, i.e. what travels to the client (default 400 KB). */
  maxImageBytes?: number;
  saveAsset: SaveAsset;
}

export interface RenderedOutputs {
  content: McpContent[];
  /** True when text was cut or an image is shown downscaled or not at all; the assets hold the originals. */
  truncated: boolean;
  /** Every asset written for this render, in order. */
  assets: string[];
  /** One line for notebook outlines, e.g. "stdout: 3 lines; image/png 640x480; error ZeroDivisionError: …". */
  summary: string;
}

export const DEFAULT_MAX_OUTPUT_CHARS = 20_000;
export const DEFAULT_MAX_IMAGE_BYTES = 400 * 1024;
const MAX_SUMMARY_CHARS = 200;
const HEAD_SHARE = 0.6;
// A cut snaps to a line break when one is this close, so kept text starts and ends on whole lines.
const LINE_SNAP = 200;
const TABLE_OPTIONS = { maxRows: 30, maxColWidth: 24 };
const WIDGET_MIME = 'application/vnd.jupyter.widget-view+json';

// ---- Small helpers over mime bundles.

function joinText(value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return value;
  if (Array.isArray(value) && value.every((v) => typeof v === 'string')) return value.join('');
  return JSON.stringify(value);
}

function lineCount(text: string): number {
  if (text === '') return 0;
  return text.split('\n').length - (text.endsWith('\n') ? 1 : 0);
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

function kb(bytes: number): string {
  return bytes < 1024 ? `${bytes} bytes` : `${Math.round(bytes / 1024)} KB`;
}

/** What a terminal would show: "\r" returns to the start of the line and later characters overwrite. */
function applyCarriageReturns(text: string): string {
  if (!text.includes('\r')) return text;
  return text
    .replace(/\r\n/g, '\n')
    .split('\n')
    .map((line) => {
      let shown = '';
      for (const part of line.split('\r')) shown = part + shown.slice(part.length);
      return shown;
    })
    .join('\n');
}

// A text/plain that only names the object ("<Figure size 640x480 with 1 Axes>", "<IPython.core.display.HTML
// object>") says nothing once a richer representation is shown.
function isPlaceholder(plain: string | undefined): boolean {
  if (plain === undefined) return true;
  const t = plain.trim();
  return t === '' || (/^<[^\n]*>$/.test(t) && !t.includes('</'));
}

function compactJson(value: unknown, indent = '', width = 100): string {
  const flat = JSON.stringify(value);
  if (flat === undefined) return String(value);
  if (typeof value !== 'object' || value === null || flat.length + indent.length <= width) return flat;
  // Nested stringify costs depth × size; past a megabyte plain indentation is good enough.
  if (flat.length > 1_000_000) return JSON.stringify(value, null, 1);
  const inner = indent + '  ';
  if (Array.isArray(value)) {
    if (value.length === 0) return '[]';
    return `[\n${value.map((v) => inner + compactJson(v, inner, width)).join(',\n')}\n${indent}]`;
  }
  const entries = Object.entries(value);
  if (entries.length === 0) return '{}';
  return `{\n${entries.map(([k, v]) => `${inner}${JSON.stringify(k)}: ${compactJson(v, inner, width)}`).join(',\n')}\n${indent}}`;
}

/** Consecutive stream outputs of the same name are one stream (kernels send them in chunks). */
function mergeStreams(outputs: readonly NotebookOutput[]): NotebookOutput[] {
  const merged: NotebookOutput[] = [];
  for (const output of outputs) {
    const last = merged[merged.length - 1];
    if (output.output_type === 'stream' && last?.output_type === 'stream' && last.name === output.name) {
      merged[merged.length - 1] = { ...last, text: (joinText(last.text) ?? '') + (joinText(output.text) ?? '') };
    } else merged.push(output);
  }
  return merged;
}

function streamText(output: StreamOutput): string {
  return applyCarriageReturns(stripAnsi(joinText(output.text) ?? ''));
}

function firstLine(text: string, max: number): string {
  const line = (text.split('\n')[0] ?? '').trim();
  return line.length > max ? line.slice(0, max - 1) + '…' : line;
}

// ---- Choosing one representation per display output.

type Representation =
  | { kind: 'image'; mime: RasterMime; base64: string; plain?: string }
  | { kind: 'text'; label: string; text: string }
  | { kind: 'svg'; text: string }
  | { kind: 'table'; text: string; rows: number; columns: number };

function chooseRepresentation(output: DisplayOutput): Representation {
  const data = output.data;
  const plainRaw = joinText(data['text/plain']);
  const plain = plainRaw === undefined ? undefined : stripAnsi(plainRaw);
  const meaningfulPlain = isPlaceholder(plain) ? undefined : plain;
  const result = output.output_type === 'execute_result' ? 'result' : 'text';

  for (const mime of ['image/png', 'image/jpeg'] as const) {
    const value = joinText(data[mime]);
    if (value !== undefined) return { kind: 'image', mime, base64: value.replace(/\s+/g, ''), plain: meaningfulPlain };
  }
  if (data[WIDGET_MIME] !== undefined) {
    const view = data[WIDGET_MIME];
    const id = view !== null && typeof view === 'object' && 'model_id' in view ? view.model_id : undefined;
    const modelId = typeof id === 'string' ? ` (model ${id})` : '';
    const text =
      `[Interactive Jupyter widget${modelId}: it renders only in a live notebook front end and cannot be shown here.]` +
      (meaningfulPlain ? `\n${meaningfulPlain}` : '');
    return { kind: 'text', label: 'widget', text };
  }
  const markdown = joinText(data['text/markdown']);
  if (markdown !== undefined) return { kind: 'text', label: 'markdown', text: stripAnsi(markdown) };
  const html = joinText(data['text/html']);
  if (html !== undefined) {
    // A table rendered by us is bounded and marks hidden rows; pandas' text/plain wraps wide frames instead.
    const table = htmlTableToText(html, TABLE_OPTIONS);
    const shape = table === null ? null : htmlTableShape(html);
    if (table !== null && shape) return { kind: 'table', text: table, ...shape };
  }
  if (meaningfulPlain !== undefined) return { kind: 'text', label: result, text: meaningfulPlain };
  if (html !== undefined) {
    const text = htmlToText(html, TABLE_OPTIONS);
    if (text !== '') return { kind: 'text', label: 'html', text };
  }
  const latex = joinText(data['text/latex']);
  if (latex !== undefined) return { kind: 'text', label: 'latex', text: latex };
  if (data['application/json'] !== undefined) {
    const value = data['application/json'];
    let parsed: unknown = value;
    if (typeof value === 'string') {
      try {
        parsed = JSON.parse(value);
      } catch {
        parsed = value;
      }
    }
    return { kind: 'text', label: 'json', text: compactJson(parsed) };
  }
  const svg = joinText(data['image/svg+xml']);
  if (svg !== undefined) return { kind: 'svg', text: svg };
  if (plain !== undefined && plain.trim() !== '') return { kind: 'text', label: result, text: plain };
  const mimes = Object.keys(data);
  return {
    kind: 'text',
    label: mimes.join(', ') || 'empty',
    text: mimes.length
      ? `[Output of type ${mimes.join(', ')} has no text form and cannot be shown here; it is kept in the notebook.]`
      : '[Empty display output.]',
  };
}

// ---- Summary line.

function summarizeOne(output: NotebookOutput): string {
  switch (output.output_type) {
    case 'stream':
      return `${output.name}: ${plural(lineCount(streamText(output)), 'line')}`;
    case 'error':
      return `error ${output.ename}: ${firstLine(stripAnsi(output.evalue), 80)}`.trimEnd().replace(/:$/, '');
    case 'display_data':
    case 'execute_result': {
      const rep = chooseRepresentation(output);
      switch (rep.kind) {
        case 'image': {
          const size = imageSize(Buffer.from(rep.base64, 'base64'), rep.mime);
          return size ? `${rep.mime} ${size.width}x${size.height}` : rep.mime;
        }
        case 'table':
          return `table ${plural(rep.rows, 'row')} x ${plural(rep.columns, 'col')}`;
        case 'svg':
          return 'image/svg+xml';
        case 'text': {
          if (rep.label === 'widget' || rep.label === 'json') return rep.label;
          const lines = lineCount(rep.text);
          return lines === 1 && rep.text.trim().length <= 60 ? `${rep.label}: ${rep.text.trim()}` : `${rep.label}: ${plural(lines, 'line')}`;
        }
      }
      break;
    }
    default: {
      const unknownType: { output_type?: unknown } = output;
      return `${String(unknownType.output_type)} output`;
    }
  }
  return '';
}

/** One line (at most ~200 characters) describing the outputs, for notebook outlines. */
export function summarizeOutputs(outputs: readonly NotebookOutput[]): string {
  const parts = mergeStreams(outputs).map(summarizeOne).filter((p) => p !== '');
  if (parts.length === 0) return 'no output';
  let line = '';
  for (let i = 0; i < parts.length; i++) {
    const next = (line ? line + '; ' : '') + parts[i];
    const more = parts.length - i - 1;
    if (next.length > MAX_SUMMARY_CHARS - (more ? 16 : 0)) {
      const rest = parts.length - i;
      const tail = `; … (+${rest} more)`;
      if (line === '') return (parts[i] ?? '').slice(0, MAX_SUMMARY_CHARS - tail.length - 1) + '…' + (rest > 1 ? `; … (+${rest - 1} more)` : '');
      return line + tail;
    }
    line = next;
  }
  return line;
}

// ---- Rendering.

type Block =
  | { kind: 'text'; text: string; pinned: boolean }
  | { kind: 'image'; data: string; mimeType: string };

interface RenderState {
  options: Required<Pick<RenderOptions, 'maxOutputChars' | 'maxImageBytes'>> & RenderOptions;
  assets: string[];
  truncated: boolean;
}

async function save(state: RenderState, data: Buffer | string, kind: 'text' | 'image', ext: string): Promise<{ path: string } | { error: string }> {
  try {
    const path = await state.options.saveAsset(data, kind, ext);
    state.assets.push(path);
    return { path };
  } catch (err) {
    return { error: err instanceof Error ? err.message : String(err) };
  }
}

function whereSaved(saved: { path: string } | { error: string }, subject: string): string {
  return 'path' in saved
    ? `${subject} is saved as asset "${saved.path}"`
    : `${subject} could not be saved as an asset (${saved.error}); it is still in the notebook's outputs`;
}

async function renderImage(state: RenderState, rep: Extract<Representation, { kind: 'image' }>): Promise<Block[]> {
  const bytes = Buffer.from(rep.base64, 'base64');
  if (bytes.length === 0) return [{ kind: 'text', text: `[Empty ${rep.mime} output.]`, pinned: false }];
  const saved = await save(state, bytes, 'image', rep.mime === 'image/png' ? 'png' : 'jpg');
  const size = imageSize(bytes, rep.mime);
  const label = size ? `${rep.mime} ${size.width}x${size.height}` : rep.mime;
  const extra: Block[] = rep.plain ? [{ kind: 'text', text: rep.plain, pinned: false }] : [];
  const budget = state.options.maxImageBytes;
  if (rep.base64.length <= budget) {
    return [{ kind: 'text', text: `[${label}; ${whereSaved(saved, 'the full-size image')}]`, pinned: true }, { kind: 'image', data: rep.base64, mimeType: rep.mime }, ...extra];
  }
  state.truncated = true;
  // Base64 carries 3 bytes in 4 characters; the budget applies to what is sent.
  const maxBinary = Math.floor(budget / 4) * 3;
  let fitted;
  try {
    fitted = downscaleImage(bytes, rep.mime, maxBinary);
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    return [{ kind: 'text', text: `[${label} could not be decoded to downscale it (${reason}); ${whereSaved(saved, 'the original')}.]`, pinned: true }, ...extra];
  }
  if (!fitted) {
    return [
      {
        kind: 'text',
        text: `[${label} does not fit the ${kb(budget)} image budget even downscaled; ${whereSaved(saved, 'the full-size image')}; read it with read_asset.]`,
        pinned: true,
      },
      ...extra,
    ];
  }
  const note =
    `[${label}, downscaled from ${fitted.originalWidth}x${fitted.originalHeight} to ${fitted.width}x${fitted.height}` +
    ` (${fitted.mime}, ${kb(fitted.data.length)}) to fit the ${kb(budget)} image budget; ${whereSaved(saved, 'the full-size image')}]`;
  return [{ kind: 'text', text: note, pinned: true }, { kind: 'image', data: fitted.data.toString('base64'), mimeType: fitted.mime }, ...extra];
}

async function renderOne(state: RenderState, output: NotebookOutput): Promise<Block[]> {
  switch (output.output_type) {
    case 'stream': {
      const text = streamText(output).replace(/\n$/, '');
      if (text === '') return [];
      return [{ kind: 'text', text: output.name === 'stderr' ? `[stderr]\n${text}` : text, pinned: false }];
    }
    case 'error': {
      const head = `${output.ename}: ${stripAnsi(output.evalue)}`;
      const traceback = (output.traceback ?? []).map(stripAnsi).join('\n').replace(/\n+$/, '');
      return [{ kind: 'text', text: traceback ? `${head}\n${traceback}` : head, pinned: false }];
    }
    case 'display_data':
    case 'execute_result': {
      const rep = chooseRepresentation(output);
      if (rep.kind === 'image') return renderImage(state, rep);
      if (rep.kind === 'svg') {
        const saved = await save(state, rep.text, 'image', 'svg');
        return [
          { kind: 'text', text: `[image/svg+xml; ${whereSaved(saved, 'it')}]`, pinned: true },
          { kind: 'text', text: rep.text, pinned: false },
        ];
      }
      return [{ kind: 'text', text: rep.text.replace(/\n+$/, ''), pinned: false }];
    }
    default: {
      const unknownType: { output_type?: unknown } = output;
      return [{ kind: 'text', text: `[Output of type ${String(unknownType.output_type)} cannot be shown.]`, pinned: false }];
    }
  }
}

/** Adjacent text blocks become one text content, joined by a line break. */
function toContent(blocks: readonly Block[]): McpContent[] {
  const content: McpContent[] = [];
  for (const block of blocks) {
    const last = content[content.length - 1];
    if (block.kind === 'image') content.push({ type: 'image', data: block.data, mimeType: block.mimeType });
    else if (last?.type === 'text') last.text += '\n' + block.text;
    else content.push({ type: 'text', text: block.text });
  }
  return content;
}

function textLength(content: readonly McpContent[]): number {
  return content.reduce((n, c) => n + (c.type === 'text' ? c.text.length : 0), 0);
}

function cutMarker(cutChars: number, from: number, to: number, total: number, saved: { path: string } | { error: string }): string {
  const what = `[… ${cutChars.toLocaleString('en-US')} characters cut here (offsets ${from}–${to} of ${total}).`;
  if ('error' in saved) return `${what} The complete text could not be saved as an asset (${saved.error}).]`;
  const p = JSON.stringify(saved.path);
  return (
    `${what} The complete text is asset ${p}: read the cut part with ` +
    `read_asset(asset_path=${p}, offset=${from}, length=${to - from}), or find something in it with read_asset(asset_path=${p}, search="…").]`
  );
}

/** Keeps about 60% of the room from the start and 40% from the end of the cuttable text, marker in between. */
async function fitText(state: RenderState, blocks: Block[]): Promise<Block[]> {
  const budget = state.options.maxOutputChars;
  let pinnedCost = blocks.reduce((n, b) => n + (b.kind === 'text' && b.pinned ? b.text.length + 1 : 0), 0);
  // Image notes are kept whole so each image keeps its asset path, unless they alone crowd out the text.
  if (pinnedCost > budget / 4) {
    blocks = blocks.map((b) => (b.kind === 'text' ? { ...b, pinned: false } : b));
    pinnedCost = 0;
  }
  const cuttable = blocks.filter((b): b is Extract<Block, { kind: 'text' }> => b.kind === 'text' && !b.pinned);
  const full = cuttable.map((b) => b.text).join('\n');
  const total = full.length;
  state.truncated = true;
  const saved = await save(state, full, 'text', 'txt');
  const markerBound = cutMarker(total, total, total, total, saved).length;
  const room = Math.max(0, budget - pinnedCost - markerBound - 2);
  let headEnd = Math.floor(room * HEAD_SHARE);
  let tailStart = total - (room - headEnd);
  const nlBefore = full.lastIndexOf('\n', headEnd - 1);
  if (nlBefore >= 0 && headEnd - nlBefore <= LINE_SNAP) headEnd = nlBefore;
  const nlAfter = full.indexOf('\n', tailStart);
  if (nlAfter >= 0 && nlAfter - tailStart < LINE_SNAP) tailStart = nlAfter + 1;
  const marker = cutMarker(tailStart - headEnd, headEnd, tailStart, total, saved);

  const out: Block[] = [];
  let markerPlaced = false;
  let pos = 0;
  for (const block of blocks) {
    if (block.kind !== 'text' || block.pinned) {
      out.push(block);
      continue;
    }
    const start = pos;
    const end = pos + block.text.length;
    pos = end + 1;
    if (start < headEnd) out.push({ kind: 'text', text: block.text.slice(0, Math.min(end, headEnd) - start), pinned: false });
    if (!markerPlaced && headEnd < end + 1) {
      out.push({ kind: 'text', text: marker, pinned: true });
      markerPlaced = true;
    }
    if (end > tailStart) out.push({ kind: 'text', text: block.text.slice(Math.max(start, tailStart) - start), pinned: false });
  }
  if (!markerPlaced) out.push({ kind: 'text', text: marker, pinned: true });
  return out.filter((b) => b.kind !== 'text' || b.text !== '');
}

/** Cuts the last text content so the total is within `budget`: a guarantee even for tiny budgets. */
function enforceBudget(content: McpContent[], budget: number): McpContent[] {
  let over = textLength(content) - budget;
  for (let i = content.length - 1; i >= 0 && over > 0; i--) {
    const c = content[i];
    if (c?.type !== 'text') continue;
    const keep = Math.max(0, c.text.length - over);
    over -= c.text.length - keep;
    c.text = c.text.slice(0, keep);
  }
  return content.filter((c) => c.type !== 'text' || c.text !== '');
}

/**
 * Renders outputs for an agent: images as image content (always also saved as assets, downscaled to fit
 * `maxImageBytes`), everything else as text; when the text passes `maxOutputChars` the middle is cut, the
 * whole text is saved once as an asset, and a marker says where and how to read it.
 */
export async function renderOutputs(outputs: readonly NotebookOutput[], options: RenderOptions): Promise<RenderedOutputs> {
  const state: RenderState = {
    options: {
      ...options,
      maxOutputChars: Math.max(0, Math.floor(options.maxOutputChars ?? DEFAULT_MAX_OUTPUT_CHARS)),
      maxImageBytes: Math.max(0, Math.floor(options.maxImageBytes ?? DEFAULT_MAX_IMAGE_BYTES)),
    },
    assets: [],
    truncated: false,
  };
  const merged = mergeStreams(outputs);
  let blocks: Block[] = [];
  for (const output of merged) blocks.push(...(await renderOne(state, output)));
  if (textLength(toContent(blocks)) > state.options.maxOutputChars) blocks = await fitText(state, blocks);
  const content = enforceBudget(toContent(blocks), state.options.maxOutputChars);
  return { content, truncated: state.truncated, assets: state.assets, summary: summarizeOutputs(outputs) };
}
