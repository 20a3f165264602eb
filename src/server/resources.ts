// Notebooks as MCP resources (`notebook://<relative path>`): list, read, and update notifications for subscribers.
import { ResourceTemplate, type McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { ErrorCode, McpError, SubscribeRequestSchema, UnsubscribeRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { serializeNotebook } from '../notebook/nbformat.js';
import { NotebookNotFoundError } from '../notebook/notebooks.js';
import { redactNotebookInPlace } from './redact.js';
import type { Workspace } from './workspace.js';

export const NOTEBOOK_URI_PREFIX = 'notebook://';
const NOTEBOOK_MIME = 'application/x-ipynb+json';
/** JSON-RPC code the MCP specification gives to "resource not found". */
const RESOURCE_NOT_FOUND = -32002;

/** `dir/my notebook.ipynb` → `notebook://dir/my%20notebook.ipynb` (each segment percent-encoded, slashes kept). */
export function notebookUri(relativePath: string): string {
  return NOTEBOOK_URI_PREFIX + relativePath.split('/').map(encodeURIComponent).join('/');
}

/** The workspace-relative path a `notebook://` URI names, as the user would type it. */
export function pathOfNotebookUri(uri: string): string {
  if (!uri.startsWith(NOTEBOOK_URI_PREFIX)) {
    throw new McpError(ErrorCode.InvalidParams, `'${uri}' is not a notebook resource; notebook URIs look like notebook://path/to/file.ipynb (resources/list shows them)`);
  }
  try {
    return uri.slice(NOTEBOOK_URI_PREFIX.length).split('/').map(decodeURIComponent).join('/');
  } catch {
    throw new McpError(ErrorCode.InvalidParams, `'${uri}' is not valid percent-encoding; take the URI from resources/list`);
  }
}

async function resolveUri(workspace: Workspace, uri: string): Promise<string> {
  try {
    return (await workspace.notebooks.resolve(pathOfNotebookUri(uri))).relative;
  } catch (error) {
    if (error instanceof McpError) throw error;
    throw new McpError(ErrorCode.InvalidParams, `${uri}: ${(error as Error).message}`);
  }
}

/**
 * Registers the notebook resources on one MCP server (one per session). Subscriptions belong to the session and
 * end with it; an update is sent whenever the notebook's file changes (an executed cell's outputs are saved, an
 * edit, or someone else's change on disk).
 */
export function registerNotebookResources(server: McpServer, workspace: Workspace): void {
  server.registerResource(
    'notebook',
    new ResourceTemplate(`${NOTEBOOK_URI_PREFIX}{+path}`, {
      list: async () => {
        const listings = await workspace.notebooks.listNotebooks();
        return {
          resources: listings.map((listing) => ({
            uri: notebookUri(listing.path),
            name: listing.path,
            mimeType: NOTEBOOK_MIME,
            description: listing.error !== undefined ? `cannot be read: ${listing.error}` : `${listing.cells ?? 0} cell(s)${listing.kernel ? `, kernel ${listing.kernel}` : ''}`,
          })),
        };
      },
    }),
    {
      title: 'Notebook',
      description:
        'A Jupyter notebook of the workspace as nbformat JSON, as it is on disk (with secrets in sources and outputs redacted when the server redacts tool results). Subscribe to be told when it changes.',
      mimeType: NOTEBOOK_MIME,
    },
    async (uri) => {
      const relative = await resolveUri(workspace, uri.href);
      try {
        const read = await workspace.notebooks.read(relative);
        workspace.notebookWatch.touch(read.path);
        // `read` is a private copy: redacting it leaves the notebook (and the file) with the originals.
        const notebook = workspace.config.redact ? redactNotebookInPlace(read.notebook) : read.notebook;
        return { contents: [{ uri: uri.href, mimeType: NOTEBOOK_MIME, text: serializeNotebook(notebook) }] };
      } catch (error) {
        if (error instanceof NotebookNotFoundError) throw new McpError(RESOURCE_NOT_FOUND, error.message);
        throw new McpError(ErrorCode.InvalidParams, `${uri.href}: ${(error as Error).message}`);
      }
    },
  );

  /** Subscribed URIs by the notebook path they name (several spellings of one notebook may be subscribed). */
  const subscriptions = new Map<string, Set<string>>();
  server.server.registerCapabilities({ resources: { subscribe: true, listChanged: true } });
  server.server.setRequestHandler(SubscribeRequestSchema, async (request) => {
    const relative = await resolveUri(workspace, request.params.uri);
    let uris = subscriptions.get(relative);
    if (!uris) subscriptions.set(relative, (uris = new Set()));
    uris.add(request.params.uri);
    workspace.notebookWatch.touch(relative);
    return {};
  });
  server.server.setRequestHandler(UnsubscribeRequestSchema, async (request) => {
    const relative = await resolveUri(workspace, request.params.uri);
    const uris = subscriptions.get(relative);
    uris?.delete(request.params.uri);
    if (uris?.size === 0) subscriptions.delete(relative);
    return {};
  });

  const stopListening = workspace.events.listen((event) => {
    if (event.type !== 'notebook.changed') return;
    const uris = subscriptions.get(event.notebook_path);
    if (!uris) return;
    for (const uri of uris) {
      // A session that went away meanwhile just misses the notification.
      server.server.sendResourceUpdated({ uri }).catch(() => undefined);
    }
  });
  const previousOnClose = server.server.onclose;
  server.server.onclose = () => {
    stopListening();
    subscriptions.clear();
    previousOnClose?.();
  };
}
