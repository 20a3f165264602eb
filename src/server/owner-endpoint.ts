// The owner's side of the workspace socket: each connected process gets its own MCP server on the one shared workspace.
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import type { JSONRPCMessage, MessageExtraInfo, RequestId } from '@modelcontextprotocol/sdk/types.js';
import type net from 'node:net';
import type { Readable, Writable } from 'node:stream';
import type { Logger } from '../log.js';
import { connectServer } from './connect.js';
import { ownerHandshake, type OwnerListener } from './ownership.js';
import { VERSION } from './version.js';
import type { Workspace } from './workspace.js';

/**
 * The SDK's stdio transport (newline-delimited JSON-RPC over any pair of streams) for one client, made to outlive
 * its peer. Closing an MCP session aborts the handlers of its open requests, and an aborted waiting call cancels its
 * execution; a client (or its process) that goes away must not take its accepted work with it. So once the peer is
 * gone, answers are dropped instead of written to a dead stream, and the session is closed only when no request
 * is being handled any more.
 */
export class ClientTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: <T extends JSONRPCMessage>(message: T, extra?: MessageExtraInfo) => void;
  sessionId?: string;
  private readonly inner: StdioServerTransport;
  private readonly handling = new Set<RequestId>();
  private gone = false;
  private closeWhenIdle: (() => void) | null = null;

  constructor(input: Readable, output: Writable) {
    this.inner = new StdioServerTransport(input, output);
    // Told apart by shape: the transport has already checked each message against the JSON-RPC schema, and the
    // SDK's guards would parse every message again with zod (about 0.1 ms for an execution's result).
    this.inner.onmessage = (message: JSONRPCMessage) => {
      if ('method' in message && 'id' in message) this.handling.add(message.id);
      // A cancelled request is never answered.
      else if ('method' in message && message.method === 'notifications/cancelled') this.settled(message.params?.['requestId'] as RequestId);
      this.onmessage?.(message);
    };
    this.inner.onerror = (error) => this.onerror?.(error);
    this.inner.onclose = () => this.onclose?.();
  }

  start(): Promise<void> {
    return this.inner.start();
  }

  async send(message: JSONRPCMessage): Promise<void> {
    // A response (result or error) has an id and no method.
    if (!('method' in message) && 'id' in message && message.id !== undefined) this.settled(message.id);
    if (this.gone) return;
    await this.inner.send(message);
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  /** The peer is gone: drop what would be sent to it, and call `close` once no request is being handled. */
  peerGone(close: () => void): void {
    this.gone = true;
    this.closeWhenIdle = close;
    this.settled(undefined);
  }

  private settled(id: RequestId | undefined): void {
    if (id !== undefined) this.handling.delete(id);
    if (!this.gone || this.handling.size > 0 || !this.closeWhenIdle) return;
    const close = this.closeWhenIdle;
    this.closeWhenIdle = null;
    close();
  }
}

interface Connection {
  socket: net.Socket;
  /** Known once the handshake succeeded. */
  pid: number | null;
  server: McpServer | null;
  transport: ClientTransport | null;
}

export interface WorkspaceOwnerOptions {
  createServer: (workspace: Workspace) => McpServer;
  log: Logger;
}

/**
 * The process that owns the workspace: the only one that writes the journal, runs kernels and saves notebooks. It
 * serves its own client (stdio or HTTP, set up by `serve`) and every follower process's client over the socket.
 */
export class WorkspaceOwner {
  private readonly connections = new Set<Connection>();
  private accepting = true;
  private clientGone = false;
  private resolveUnused: (why: string) => void = () => undefined;
  /** Resolves once this process's own client has left and no other process is connected: then the owner stops. */
  readonly unused: Promise<string>;

  constructor(
    readonly workspace: Workspace,
    private readonly listener: OwnerListener,
    private readonly options: WorkspaceOwnerOptions,
  ) {
    this.unused = new Promise((resolve) => {
      this.resolveUnused = resolve;
    });
    workspace.followerPids = () => this.followerPids();
    listener.accept((socket) => void this.serve(socket));
  }

  /**
   * The other processes whose clients this one serves. After a takeover this process's own client comes through the
   * socket too (its pipe connects to itself); that connection is not another process and is not counted.
   */
  followerPids(): number[] {
    const pids: number[] = [];
    for (const connection of this.connections) if (connection.pid !== null && connection.pid !== process.pid) pids.push(connection.pid);
    return pids;
  }

  /** This process's own client is gone (stdin closed): keep serving the followers, stop after the last one. */
  clientLeft(): void {
    if (this.clientGone) return;
    this.clientGone = true;
    const followers = this.followerPids();
    if (followers.length > 0) this.options.log('info', 'own client left; still serving other processes', { followers });
    this.checkUnused('the client left');
  }

  /**
   * Stops owning: no new connection is served and the followers' sessions stop answering, the workspace closes
   * (kernels are kept when other processes are still connected: one of them takes the workspace over and re-attaches
   * them), then the address is released and the followers are disconnected, which starts their election.
   */
  async close(): Promise<void> {
    this.accepting = false;
    const keepKernels = this.followerPids().length > 0;
    // Their sessions are not closed (that would cancel the executions their calls wait for, which the next owner
    // resumes): from now on nothing more is answered, and each pipe tells its client that this owner stopped.
    for (const connection of this.connections) {
      // Nothing new is read either: no call starts on a workspace that is closing.
      connection.socket.pause();
      connection.transport?.peerGone(() => undefined);
    }
    await this.workspace.close(keepKernels ? {} : { shutdownIdleKernels: true });
    const released = this.listener.close();
    for (const connection of this.connections) connection.socket.destroy();
    await released;
  }

  private checkUnused(why: string): void {
    if (this.clientGone && this.followerPids().length === 0) this.resolveUnused(why);
  }

  private async serve(socket: net.Socket): Promise<void> {
    // Every error is followed by 'close', handled below; unheard, an error would end the process.
    socket.on('error', () => undefined);
    if (!this.accepting) {
      // Stopping: the peer retries its election and wins once this process has let go of the workspace.
      socket.destroy();
      return;
    }
    const connection: Connection = { socket, pid: null, server: null, transport: null };
    this.connections.add(connection);
    socket.once('close', () => {
      this.connections.delete(connection);
      const { server } = connection;
      if (server) connection.transport?.peerGone(() => void server.close());
      if (connection.pid !== null && connection.pid !== process.pid) this.options.log('info', 'a follower process disconnected', { pid: connection.pid });
      this.checkUnused('the last client left');
    });
    let pid: number;
    try {
      ({ pid } = await ownerHandshake(socket, this.listener.key, { pid: process.pid, workspace: this.workspace.config.workspace, version: VERSION }));
    } catch (error) {
      this.options.log('warn', 'refused a connection to the workspace socket', { error: (error as Error).message });
      socket.destroy();
      return;
    }
    if (!this.accepting || socket.destroyed) {
      socket.destroy();
      return;
    }
    connection.pid = pid;
    const server = this.options.createServer(this.workspace);
    const transport = new ClientTransport(socket, socket);
    connection.server = server;
    connection.transport = transport;
    await connectServer(server, transport);
    socket.resume();
    if (pid !== process.pid) this.options.log('info', 'serving a follower process', { pid });
  }
}
