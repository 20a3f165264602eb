// Shared pieces of every tool: parameter schemas with helpful errors, cell references, result building.
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { RequestHandlerExtra } from '@modelcontextprotocol/sdk/shared/protocol.js';
import { toJsonSchemaCompat } from '@modelcontextprotocol/sdk/server/zod-json-schema-compat.js';
import { ListToolsRequestSchema, type CallToolResult, type ServerNotification, type ServerRequest, type Tool } from '@modelcontextprotocol/sdk/types.js';
import { z, type ZodObject, type ZodRawShape, type ZodTypeAny } from 'zod';
import type { CellRef } from '../../notebook/notebooks.js';
import type { McpContent } from '../../notebook/outputs.js';
import { toolMetrics, type ToolMetrics } from '../metrics.js';
import { redactToolResult } from '../redact.js';
import type { Workspace } from '../workspace.js';

export type ToolExtra = RequestHandlerExtra<ServerRequest, ServerNotification>;

/** A user-facing problem with the call: its message says what was wrong and what to do. */
export class ToolInputError extends Error {}

export const notebookPathSchema = z
  .string({
    required_error: "notebook_path is required: a notebook path relative to the workspace root, e.g. 'analysis.ipynb'",
    invalid_type_error: "notebook_path must be a string: a notebook path relative to the workspace root, e.g. 'analysis.ipynb'",
  })
  .min(1, "notebook_path must not be empty: give a notebook path relative to the workspace root, e.g. 'analysis.ipynb'")
  .max(4096, 'notebook_path is too long (4096 characters at most)')
  .describe('Notebook path relative to the workspace root (absolute paths inside the root are accepted)');

export const cellIdSchema = z
  .string({ invalid_type_error: 'cell_id must be a string: the nbformat cell id shown by read_notebook' })
  .min(1, 'cell_id must not be empty: use read_notebook to see the cell ids')
  .max(64, 'cell_id is at most 64 characters (nbformat 4.5 cell ids); use read_notebook to see the cell ids')
  .describe('The cell id (nbformat 4.5); preferred over index');

export const indexSchema = z
  .number({ invalid_type_error: 'index must be a whole number (0-based cell position)' })
  .int('index must be a whole number (0-based cell position)')
  .min(0, 'index must be 0 or more (0-based cell position)')
  .describe('0-based cell position (use cell_id when you can: positions change when cells move)');

export const cellRefShape = { cell_id: cellIdSchema.optional(), index: indexSchema.optional() };

export function integer(name: string, description: string, min: number, max: number): z.ZodNumber {
  return z
    .number({ invalid_type_error: `${name} must be a number` })
    .int(`${name} must be a whole number`)
    .min(min, `${name} must be at least ${min}`)
    .max(max, `${name} must be at most ${max}`)
    .describe(description);
}

export function seconds(name: string, description: string, max: number): z.ZodNumber {
  return z
    .number({ invalid_type_error: `${name} must be a number of seconds` })
    .min(0, `${name} must be 0 or more seconds`)
    .max(max, `${name} must be at most ${max} seconds`)
    .describe(description);
}

export function boolean(name: string, description: string): z.ZodBoolean {
  return z.boolean({ invalid_type_error: `${name} must be true or false` }).describe(description);
}

/** Exactly one of cell_id and index. */
export function cellRef(args: { cell_id?: string | undefined; index?: number | undefined }, required = true): CellRef | undefined {
  if (args.cell_id !== undefined && args.index !== undefined) throw new ToolInputError('give either cell_id or index, not both (cell_id is preferred)');
  if (args.cell_id !== undefined) return { cellId: args.cell_id };
  if (args.index !== undefined) return { index: args.index };
  if (required) throw new ToolInputError('name the cell with cell_id (preferred) or index; read_notebook lists both');
  return undefined;
}

export interface ToolResultParts {
  text: string;
  structured: Record<string, unknown>;
  /** Rendered outputs (text and images) that follow the summary text. */
  extra?: McpContent[];
}

export function result(parts: ToolResultParts): CallToolResult {
  return {
    content: [{ type: 'text', text: parts.text }, ...(parts.extra ?? [])],
    structuredContent: parts.structured,
  };
}

export type ToolAnnotations = { readOnlyHint?: boolean; destructiveHint?: boolean; idempotentHint?: boolean; openWorldHint?: boolean };

export interface ToolDefinition<Input extends ZodRawShape, Output extends ZodRawShape> {
  title: string;
  description: string;
  input: Input;
  output: Output;
  annotations?: ToolAnnotations;
}

/**
 * A tool's name, texts and schemas, built once per process (module level) and shared by every MCP server:
 * building them per session cost milliseconds and hundreds of kilobytes per client.
 */
export interface ToolSpec<Input extends ZodRawShape> {
  readonly name: string;
  readonly title: string;
  readonly description: string;
  readonly inputSchema: ZodObject<Input, 'strict'>;
  readonly outputSchema: ZodObject<ZodRawShape, 'passthrough'>;
  readonly annotations?: ToolAnnotations;
}

export type ToolArgs<Input extends ZodRawShape> = z.objectOutputType<Input, ZodTypeAny, 'strip'>;
export type ToolHandler<Input extends ZodRawShape> = (args: ToolArgs<Input>, extra: ToolExtra) => Promise<CallToolResult>;

/**
 * The spec of a tool whose input object is strict: an unknown or misspelt parameter is an error that lists the
 * valid ones, instead of being silently ignored.
 */
export function toolSpec<Input extends ZodRawShape, Output extends ZodRawShape>(name: string, definition: ToolDefinition<Input, Output>): ToolSpec<Input> {
  const valid = Object.keys(definition.input);
  const inputSchema = z
    .object(definition.input, {
      errorMap: (issue, context) =>
        issue.code === 'unrecognized_keys'
          ? { message: `unknown parameter ${issue.keys.map((key) => `'${key}'`).join(', ')}; ${name} takes ${valid.length ? valid.join(', ') : 'no parameters'}` }
          : { message: context.defaultError },
    })
    .strict();
  return {
    name,
    title: definition.title,
    description: definition.description,
    inputSchema,
    outputSchema: z.object(definition.output as ZodRawShape).passthrough(),
    ...(definition.annotations ? { annotations: definition.annotations } : {}),
  };
}

/** What every tool of one MCP server applies to its results. */
export interface ToolContext {
  /** Replace secrets in text returned to the agent (the notebook and the journal keep the originals). */
  redact: boolean;
}

const contexts = new WeakMap<McpServer, ToolContext>();

/** Sets the context of a server's tools (createMcpServer does it from the workspace config); read at each call. */
export function setToolContext(server: McpServer, context: ToolContext): void {
  contexts.set(server, context);
}

export interface ToolCallStats {
  calls: number;
  errors: number;
  totalSeconds: number;
  maxSeconds: number;
}

/** Calls that reached a handler since this process started, per tool (inputs refused by the schema are not counted). */
const callStats = new Map<string, ToolCallStats>();

export function toolCallStats(): Record<string, ToolCallStats> {
  return Object.fromEntries([...callStats].map(([name, stats]) => [name, { ...stats }]));
}

/** Looked up once: the process-wide registry keeps its metrics for the life of the process. */
let metricsOnce: ToolMetrics | undefined;
const metrics = (): ToolMetrics => (metricsOnce ??= toolMetrics());

function recordCall(name: string, seconds: number, failed: boolean): void {
  metrics().calls.inc({ tool: name, outcome: failed ? 'error' : 'ok' });
  metrics().duration.observe({ tool: name }, seconds);
  let stats = callStats.get(name);
  if (!stats) callStats.set(name, (stats = { calls: 0, errors: 0, totalSeconds: 0, maxSeconds: 0 }));
  stats.calls += 1;
  if (failed) stats.errors += 1;
  stats.totalSeconds += seconds;
  stats.maxSeconds = Math.max(stats.maxSeconds, seconds);
}

function redacted(server: McpServer, outcome: CallToolResult): CallToolResult {
  if (!contexts.get(server)?.redact) return outcome;
  const counts = new Map<string, number>();
  const clean = redactToolResult(outcome, counts);
  for (const [kind, n] of counts) metrics().redactions.inc({ kind }, n);
  return clean;
}

/** The specs registered on each server, in order: its tools/list answer is built from them. */
const registered = new WeakMap<McpServer, Array<ToolSpec<ZodRawShape>>>();

/**
 * Registers a tool on one server: the shared spec, and this server's handler. Thrown errors become tool errors
 * (`isError: true`): the server never dies from a call.
 */
export function defineTool<Input extends ZodRawShape>(server: McpServer, spec: ToolSpec<Input>, handler: ToolHandler<Input>): void {
  server.registerTool(
    spec.name,
    {
      title: spec.title,
      description: spec.description,
      inputSchema: spec.inputSchema,
      outputSchema: spec.outputSchema,
      ...(spec.annotations ? { annotations: spec.annotations } : {}),
    },
    (async (args: ToolArgs<Input>, extra: ToolExtra) => {
      const started = process.hrtime.bigint();
      let outcome: CallToolResult;
      try {
        outcome = await handler(args, extra);
      } catch (error) {
        outcome = { content: [{ type: 'text', text: errorText(error) }], isError: true };
      }
      recordCall(spec.name, Number(process.hrtime.bigint() - started) / 1e9, outcome.isError === true);
      return redacted(server, outcome);
    }) as never,
  );
  let specs = registered.get(server);
  if (!specs) registered.set(server, (specs = []));
  specs.push(spec as unknown as ToolSpec<ZodRawShape>);
}

/** A tool as tools/list shows it; the same conversion McpServer makes, done once per spec instead of per request. */
const listings = new WeakMap<ToolSpec<ZodRawShape>, Tool>();

function listingOf(spec: ToolSpec<ZodRawShape>): Tool {
  let listing = listings.get(spec);
  if (!listing) {
    listing = deepFreeze({
      name: spec.name,
      title: spec.title,
      description: spec.description,
      inputSchema: toJsonSchemaCompat(spec.inputSchema, { strictUnions: true, pipeStrategy: 'input' }) as Tool['inputSchema'],
      ...(spec.annotations ? { annotations: spec.annotations } : {}),
      execution: { taskSupport: 'forbidden' as const },
      outputSchema: toJsonSchemaCompat(spec.outputSchema, { strictUnions: true, pipeStrategy: 'output' }) as NonNullable<Tool['outputSchema']>,
    });
    listings.set(spec, listing);
  }
  return listing;
}

/** The last list built: every session of a process registers the same specs, so they share one answer. */
let sharedList: { specs: ReadonlyArray<ToolSpec<ZodRawShape>>; tools: readonly Tool[] } | undefined;

function listFor(specs: ReadonlyArray<ToolSpec<ZodRawShape>>): readonly Tool[] {
  if (sharedList && sharedList.specs.length === specs.length && sharedList.specs.every((spec, i) => spec === specs[i])) return sharedList.tools;
  sharedList = { specs: [...specs], tools: Object.freeze(specs.map(listingOf)) };
  return sharedList.tools;
}

/**
 * Answers tools/list from the shared, precomputed listing of the server's tools (call it once every tool is
 * registered; tools are never disabled). McpServer would convert every zod schema to JSON Schema on each request.
 */
export function serveSharedToolList(server: McpServer): void {
  const specs = registered.get(server) ?? [];
  let tools: readonly Tool[] | undefined;
  server.server.setRequestHandler(ListToolsRequestSchema, () => ({ tools: (tools ??= listFor(specs)) as Tool[] }));
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}

function errorText(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}

export type ToolRegistrar = (server: McpServer, workspace: Workspace) => void;
