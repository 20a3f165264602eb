// Connects one MCP server to its transport, with incoming requests and notifications handed straight to the SDK's
// dispatcher.
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import type { JSONRPCMessage, MessageExtraInfo } from '@modelcontextprotocol/sdk/types.js';

type Dispatch = (message: JSONRPCMessage, extra?: MessageExtraInfo) => void;

interface ProtocolInternals {
  _onrequest?: Dispatch;
  _onnotification?: (message: JSONRPCMessage) => void;
}

/**
 * `server.connect(transport)`, then a shortcut in front of the SDK's message handler. That handler first tries every
 * incoming message as a result response and as an error response with zod (isJSONRPCResultResponse,
 * isJSONRPCErrorResponse); for a request both fail, and building the two ZodErrors costs about 0.1 ms per message,
 * a tenth of our budget for a whole tool call. Every transport we use (stdio, Streamable HTTP) has already parsed each
 * message with the JSON-RPC schema, so a message with a method is a request (with an id) or a notification (without),
 * and goes where the SDK itself would send it. Responses to our own requests (elicitation) take the SDK's path.
 *
 * The SDK has no public hook for this: it reads Protocol's private `_onrequest` and `_onnotification` (SDK 1.32), and
 * fails loudly at connect if they are gone.
 */
export async function connectServer(server: McpServer, transport: Transport): Promise<void> {
  const internals = server.server as unknown as ProtocolInternals;
  const onRequest = internals._onrequest;
  const onNotification = internals._onnotification;
  if (typeof onRequest !== 'function' || typeof onNotification !== 'function') {
    throw new Error(
      'the MCP SDK has no Protocol._onrequest/_onnotification where @modelcontextprotocol/sdk 1.32 has them. Pin the SDK to 1.32.x, or update src/server/connect.ts for this version.',
    );
  }
  await server.connect(transport);
  const sdkHandler = transport.onmessage;
  if (!sdkHandler) throw new Error('the MCP SDK did not attach a message handler to the transport');
  transport.onmessage = (message: JSONRPCMessage, extra?: MessageExtraInfo) => {
    if (!('method' in message)) sdkHandler(message, extra);
    else if ('id' in message) onRequest.call(server.server, message, extra);
    else onNotification.call(server.server, message);
  };
}
