// The Jupyter messaging protocol on the wire: build messages, sign them (HMAC), frame them, parse and verify them.

import { createHmac, randomUUID, timingSafeEqual } from 'node:crypto';
import { userInfo } from 'node:os';
import type { ChannelName, JupyterMessage, MessageHeader } from './types.js';

export const PROTOCOL_VERSION = '5.3';
export const DELIMITER = '<IDS|MSG>';
const DELIMITER_BYTES = Buffer.from(DELIMITER);

let cachedUsername: string | undefined;
function defaultUsername(): string {
  if (cachedUsername === undefined) {
    try {
      cachedUsername = userInfo().username;
    } catch {
      // userInfo() throws when the uid has no passwd entry (common in containers).
      cachedUsername = process.env['USER'] ?? 'mcp-server-jupyter';
    }
  }
  return cachedUsername;
}

export interface CreateMessageOptions {
  /** The session id of the client (goes into `header.session`). */
  session: string;
  username?: string;
  parent?: Partial<MessageHeader>;
  metadata?: Record<string, unknown>;
  buffers?: Buffer[];
}

export function createMessage(
  channel: ChannelName,
  msgType: string,
  content: Record<string, unknown>,
  options: CreateMessageOptions,
): JupyterMessage {
  return {
    header: {
      msg_id: randomUUID(),
      session: options.session,
      username: options.username ?? defaultUsername(),
      date: new Date().toISOString(),
      msg_type: msgType,
      version: PROTOCOL_VERSION,
    },
    parent_header: options.parent ? { ...options.parent } : {},
    metadata: options.metadata ?? {},
    content,
    buffers: options.buffers ?? [],
    channel,
  };
}

/** Signs and verifies with the key and scheme of one connection file. */
export class Signer {
  private readonly key: Buffer;
  private readonly algorithm: string;

  constructor(key: string, signatureScheme = 'hmac-sha256') {
    this.key = Buffer.from(key, 'utf8');
    const match = /^hmac-([a-z0-9-]+)$/i.exec(signatureScheme);
    if (!match?.[1]) {
      throw new Error(`Unsupported signature_scheme "${signatureScheme}" in the connection info: expected e.g. "hmac-sha256".`);
    }
    this.algorithm = match[1].toLowerCase();
    // Fail now on an unknown digest rather than on the first message.
    createHmac(this.algorithm, 'probe');
  }

  /** An empty key means the kernel runs without authentication, as in Jupyter. */
  get enabled(): boolean {
    return this.key.length > 0;
  }

  sign(frames: readonly Buffer[]): string {
    if (!this.enabled) return '';
    const hmac = createHmac(this.algorithm, this.key);
    for (const frame of frames) hmac.update(frame);
    return hmac.digest('hex');
  }

  verify(signature: Buffer, frames: readonly Buffer[]): boolean {
    if (!this.enabled) return true;
    const expected = Buffer.from(this.sign(frames), 'ascii');
    return signature.length === expected.length && timingSafeEqual(signature, expected);
  }
}

/** ZeroMQ frames: `[...identities, "<IDS|MSG>", signature, header, parent_header, metadata, content, ...buffers]`. */
export function serializeMessage(message: JupyterMessage, signer: Signer, identities: readonly Buffer[] = []): Buffer[] {
  const parts = [
    Buffer.from(JSON.stringify(message.header)),
    Buffer.from(JSON.stringify(message.parent_header)),
    Buffer.from(JSON.stringify(message.metadata)),
    Buffer.from(JSON.stringify(message.content)),
  ];
  return [...identities, DELIMITER_BYTES, Buffer.from(signer.sign(parts)), ...parts, ...message.buffers];
}

export type ParseResult =
  | { ok: true; message: JupyterMessage; identities: Buffer[] }
  /** `signature`: missing or wrong HMAC (count it); `malformed`: not a Jupyter message at all. */
  | { ok: false; reason: 'signature' | 'malformed'; detail: string };

export function parseMessage(frames: readonly Buffer[], signer: Signer, channel: ChannelName): ParseResult {
  const delimiterAt = frames.findIndex((frame) => frame.equals(DELIMITER_BYTES));
  if (delimiterAt < 0) return { ok: false, reason: 'malformed', detail: 'no <IDS|MSG> delimiter frame' };
  const signature = frames[delimiterAt + 1];
  const parts = frames.slice(delimiterAt + 2, delimiterAt + 6);
  if (signature === undefined || parts.length < 4) {
    return signer.enabled
      ? { ok: false, reason: 'signature', detail: 'message is truncated: no signature or fewer than four JSON frames' }
      : { ok: false, reason: 'malformed', detail: 'fewer than four JSON frames after the delimiter' };
  }
  if (!signer.verify(signature, parts)) return { ok: false, reason: 'signature', detail: 'HMAC signature does not match' };

  const [header, parentHeader, metadata, content] = parts.map(parseJsonObject);
  if (!header || !parentHeader || !metadata || !content) {
    return { ok: false, reason: 'malformed', detail: 'a header/parent_header/metadata/content frame is not a JSON object' };
  }
  if (typeof header['msg_id'] !== 'string' || typeof header['msg_type'] !== 'string') {
    return { ok: false, reason: 'malformed', detail: 'header lacks msg_id or msg_type' };
  }
  return {
    ok: true,
    identities: frames.slice(0, delimiterAt),
    message: {
      header: header as MessageHeader,
      parent_header: parentHeader as Partial<MessageHeader>,
      metadata,
      content,
      buffers: frames.slice(delimiterAt + 6),
      channel,
    },
  };
}

function parseJsonObject(frame: Buffer | undefined): Record<string, unknown> | undefined {
  if (!frame) return undefined;
  try {
    const value: unknown = JSON.parse(frame.toString('utf8'));
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
