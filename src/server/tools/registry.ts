// The tools of each MCP server, and the tools/list and tools/call handlers that serve them.
//
// McpServer's own tools/call path parses every request up to four times and every result three times with zod
// (Server's wrapper, Protocol's handler, McpServer's output check): about 0.2 ms of a 1 ms budget per call. Here a
// call is checked once, by hand for the envelope and by the tool's own zod schema for its arguments; results are
// built by our code and valid by construction (SDK clients still check structuredContent against outputSchema).
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { Protocol } from '@modelcontextprotocol/sdk/shared/protocol.js';
import { toJsonSchemaCompat } from '@modelcontextprotocol/sdk/server/zod-json-schema-compat.js';
import { ErrorCode, ListToolsRequestSchema, McpError, type CallToolResult, type CreateTaskResult, type Tool } from '@modelcontextprotocol/sdk/types.js';
import { z, type ZodError, type ZodRawShape } from 'zod';
import { toolMetrics, type ToolMetrics } from '../metrics.js';
import { redactToolResult } from '../redact.js';
import { isPlainObject } from '../../util/plain-object.js';
import type { ToolArgs, ToolExtra, ToolSpec } from './common.js';

export type ToolHandler<Input extends ZodRawShape> = (args: ToolArgs<Input>, extra: ToolExtra) => Promise<CallToolResult>;

interface RegisteredTool {
  spec: ToolSpec<ZodRawShape>;
  handler: (args: unknown, extra: ToolExtra) => Promise<CallToolResult>;
}

/** What every tool of one MCP server applies to its results. */
export interface ToolContext {
  /** Replace secrets in text returned to the agent (the notebook and the journal keep the originals). */
  redact: boolean;
}

/** A tools/call the server answers as an MCP task instead (see ../tasks.ts). */
export interface TaskRoute {
  tools: readonly string[];
  create(name: string, args: Record<string, unknown>, extra: ToolExtra): Promise<CreateTaskResult>;
}

interface ServerTools {
  /** In registration order: the order tools/list shows. */
  tools: Map<string, RegisteredTool>;
  context: ToolContext;
  tasks: TaskRoute | null;
}

const servers = new WeakMap<McpServer, ServerTools>();

function toolsOf(server: McpServer): ServerTools {
  let entry = servers.get(server);
  if (!entry) servers.set(server, (entry = { tools: new Map(), context: { redact: false }, tasks: null }));
  return entry;
}

/** Sets the context of a server's tools (createMcpServer does it from the workspace config); read at each call. */
export function setToolContext(server: McpServer, context: ToolContext): void {
  toolsOf(server).context = context;
}

/** Routes task-augmented calls of these tools to `route.create` (call before `serveTools`). */
export function setTaskRoute(server: McpServer, route: TaskRoute): void {
  toolsOf(server).tasks = route;
}

/** Registers a tool on one server: the shared spec, and this server's handler. */
export function defineTool<Input extends ZodRawShape>(server: McpServer, spec: ToolSpec<Input>, handler: ToolHandler<Input>): void {
  const tools = toolsOf(server).tools;
  if (tools.has(spec.name)) throw new Error(`tool ${spec.name} is registered twice`);
  tools.set(spec.name, { spec: spec as unknown as ToolSpec<ZodRawShape>, handler: handler as RegisteredTool['handler'] });
}

/** The specs registered on a server, in order. */
export function registeredSpecs(server: McpServer): Array<ToolSpec<ZodRawShape>> {
  return [...toolsOf(server).tools.values()].map((tool) => tool.spec);
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

function toolError(text: string): CallToolResult {
  return { content: [{ type: 'text', text }], isError: true };
}

/** Each problem on its own line, naming the parameter when the message does not already start with it. */
function describeIssues(error: ZodError): string {
  return error.issues
    .map((issue) => {
      const where = issue.path.map(String).join('.');
      return where === '' || issue.message.startsWith(String(issue.path[0])) ? issue.message : `${issue.message} (at ${where})`;
    })
    .join('\n');
}

/**
 * Runs one tool call. Unknown tools, invalid arguments and thrown errors become tool errors (`isError: true`) whose
 * text says what to do: the agent can correct itself, and the server never dies from a call.
 */
export async function callTool(server: McpServer, name: string, args: Record<string, unknown> | undefined, extra: ToolExtra): Promise<CallToolResult> {
  const { tools, context } = toolsOf(server);
  const tool = tools.get(name);
  if (!tool) return toolError(`unknown tool '${name}': this server's tools are ${[...tools.keys()].join(', ')}`);
  const parsed = tool.spec.inputSchema.safeParse(args ?? {});
  if (!parsed.success) return toolError(`invalid arguments for ${name}: ${describeIssues(parsed.error)}`);
  const started = process.hrtime.bigint();
  let outcome: CallToolResult;
  try {
    outcome = await tool.handler(parsed.data, extra);
  } catch (error) {
    outcome = toolError(error instanceof Error ? error.message : String(error));
  }
  recordCall(name, Number(process.hrtime.bigint() - started) / 1e9, outcome.isError === true);
  if (!context.redact) return outcome;
  const counts = new Map<string, number>();
  const clean = redactToolResult(outcome, counts);
  for (const [kind, n] of counts) metrics().redactions.inc({ kind }, n);
  return clean;
}

/** A tool as tools/list shows it; the same conversion McpServer makes, done once per spec instead of per request. */
const listings = new WeakMap<ToolSpec<ZodRawShape>, Tool>();

function listingOf(spec: ToolSpec<ZodRawShape>, taskSupport: 'forbidden' | 'optional'): Tool {
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
  return taskSupport === 'forbidden' ? listing : deepFreeze({ ...listing, execution: { taskSupport } });
}

/** The last list built: every session of a process registers the same specs, so they share one answer. */
let sharedList: { specs: ReadonlyArray<ToolSpec<ZodRawShape>>; taskTools: readonly string[]; tools: readonly Tool[] } | undefined;

function listFor(specs: ReadonlyArray<ToolSpec<ZodRawShape>>, taskTools: readonly string[]): readonly Tool[] {
  const same =
    sharedList &&
    sharedList.specs.length === specs.length &&
    sharedList.specs.every((spec, i) => spec === specs[i]) &&
    sharedList.taskTools.length === taskTools.length &&
    sharedList.taskTools.every((name, i) => name === taskTools[i]);
  if (same) return sharedList!.tools;
  const tools = Object.freeze(specs.map((spec) => listingOf(spec, taskTools.includes(spec.name) ? 'optional' : 'forbidden')));
  sharedList = { specs: [...specs], taskTools: [...taskTools], tools };
  return tools;
}

/** Only `method` is parsed by the SDK; the rest is checked in `callParams` with errors that say what to fix. */
const TOOLS_CALL = z.object({ method: z.literal('tools/call') }).passthrough();

interface CallParams {
  name: string;
  args: Record<string, unknown> | undefined;
  task: boolean;
}

/** The checks CallToolRequestSchema made, by hand. */
function callParams(request: Record<string, unknown>): CallParams {
  const invalid = (what: string): McpError => new McpError(ErrorCode.InvalidParams, `Invalid tools/call request: ${what}`);
  const params = request['params'];
  if (!isPlainObject(params)) throw invalid('params must be an object with the tool name and its arguments');
  const name = params['name'];
  if (typeof name !== 'string') throw invalid('params.name must be the name of a tool (tools/list names them)');
  const args = params['arguments'];
  if (args !== undefined && !isPlainObject(args)) throw invalid('params.arguments must be an object of named arguments');
  const meta = params['_meta'];
  if (meta !== undefined && !isPlainObject(meta)) throw invalid('params._meta must be an object');
  const token = meta?.['progressToken'];
  if (token !== undefined && typeof token !== 'string' && typeof token !== 'number') throw invalid('params._meta.progressToken must be a string or a number');
  const task = params['task'];
  if (task !== undefined && (!isPlainObject(task) || (task['ttl'] !== undefined && typeof task['ttl'] !== 'number'))) {
    throw invalid('params.task must be an object, with ttl a number of milliseconds when given');
  }
  return { name, args, task: task !== undefined };
}

/**
 * Answers tools/list from the shared, precomputed listing (McpServer would convert every zod schema on each
 * request) and tools/call with `callTool`. Call it once every tool is registered; tools are never disabled.
 */
export function serveTools(server: McpServer): void {
  const entry = toolsOf(server);
  const specs = [...entry.tools.values()].map((tool) => tool.spec);
  server.server.registerCapabilities({ tools: {} });
  let tools: readonly Tool[] | undefined;
  server.server.setRequestHandler(ListToolsRequestSchema, () => ({ tools: (tools ??= listFor(specs, entry.tasks?.tools ?? [])) as Tool[] }));
  // The Server class wraps any tools/call handler in its zod checks of request and result; the base class's
  // registration is the same table without that wrapper.
  const register = Protocol.prototype.setRequestHandler as (this: unknown, schema: typeof TOOLS_CALL, handler: (request: z.infer<typeof TOOLS_CALL>, extra: ToolExtra) => Promise<CallToolResult | CreateTaskResult>) => void;
  register.call(server.server, TOOLS_CALL, async (request, extra) => {
    const { name, args, task } = callParams(request);
    if (!task) return callTool(server, name, args, extra);
    if (!entry.tasks) throw new McpError(ErrorCode.InvalidParams, `${name} cannot run as a task on this server: call it without 'task'`);
    return entry.tasks.create(name, args ?? {}, extra);
  });
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}
