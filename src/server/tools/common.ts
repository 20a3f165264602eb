// Shared pieces of every tool: parameter schemas with helpful errors, cell references, result building.
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { RequestHandlerExtra } from '@modelcontextprotocol/sdk/shared/protocol.js';
import type { CallToolResult, ServerNotification, ServerRequest } from '@modelcontextprotocol/sdk/types.js';
import { z, type ZodObject, type ZodRawShape, type ZodTypeAny } from 'zod';
import type { CellRef } from '../../notebook/notebooks.js';
import type { McpContent } from '../../notebook/outputs.js';
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

/** A kernelspec name; each tool adds its own description (list_kernelspecs shows the names). */
export const kernelNameSchema = z.string({ invalid_type_error: 'kernel_name must be a kernelspec name string, e.g. python3' }).min(1);

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

// Registration and dispatch live in registry.ts; tool modules import them from here with the rest.
export { defineTool, toolCallStats, type ToolCallStats } from './registry.js';

export type ToolRegistrar = (server: McpServer, workspace: Workspace) => void;
