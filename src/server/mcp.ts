// Builds one MCP server (one per client session) with every tool of the API registered on the shared workspace.
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { AjvJsonSchemaValidator } from '@modelcontextprotocol/sdk/validation/ajv';
import { registerNotebookResources } from './resources.js';
import { enableExecutionTasks } from './tasks.js';
import { registerAssetTools } from './tools/assets.js';
import { registerExecutionTools } from './tools/execution.js';
import { registerKernelTools } from './tools/kernels.js';
import { registerNotebookTools } from './tools/notebooks.js';
import { serveTools, setToolContext } from './tools/registry.js';
import { registerServerTools } from './tools/server-status.js';
import { registerSyncTools } from './tools/sync.js';
import { registerVariableTools } from './tools/variables.js';
import { VERSION } from './version.js';
import type { Workspace } from './workspace.js';

const INSTRUCTIONS = `A durable Jupyter workspace. Every call names its notebook (notebook_path, relative to the workspace root); there is no "current notebook".
Cells are best named by cell_id (read_notebook lists them). execute_cell writes outputs into the notebook; execute_code does not touch the file.
A call that waits past timeout_s answers "running" with an execution_id: the work goes on, and get_execution (with wait_s) picks it up.
Executions survive restarts of this server: an execution_id always answers.`;

const SERVER_INFO = { name: 'mcp-server-jupyter', title: 'Jupyter workspace', version: VERSION };

/**
 * One JSON Schema validator (it checks elicitation answers) for every session: each Server would otherwise build its
 * own Ajv instance, about half a millisecond and 20 KB per session. It keeps no per-session state.
 */
const jsonSchemaValidator = new AjvJsonSchemaValidator();

/**
 * Per session this costs only the SDK objects and one closure per tool: tool specs (zod schemas, texts) and the
 * tools/list answer are built once per process and shared.
 */
export function createMcpServer(workspace: Workspace): McpServer {
  const server = new McpServer(SERVER_INFO, { capabilities: { tools: {}, logging: {} }, instructions: INSTRUCTIONS, jsonSchemaValidator });
  setToolContext(server, { redact: workspace.config.redact });
  registerNotebookTools(server, workspace);
  registerExecutionTools(server, workspace);
  registerSyncTools(server, workspace);
  registerKernelTools(server, workspace);
  registerVariableTools(server, workspace);
  registerAssetTools(server, workspace, workspace.assets);
  registerServerTools(server, workspace);
  registerNotebookResources(server, workspace);
  // execute_cell, execute_code and run_all_cells can also be called as MCP tasks (after the tools are registered).
  enableExecutionTasks(server, workspace);
  serveTools(server);
  return server;
}
