// Replaces secrets (API keys, tokens, private keys, password assignments) in text returned to agents with markers.
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';

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

/** `text` with every secret replaced by `[REDACTED kind]`; `counts` gets how many of each kind were replaced. */
export function redactText(text: string, counts: RedactionCounts = new Map()): string {
  let out = text;
  for (const { kind, regex } of PATTERNS) {
    regex.lastIndex = 0;
    if (!regex.test(out)) continue;
    regex.lastIndex = 0;
    out = out.replace(regex, (match: string, ...rest: unknown[]) => {
      const groups = rest[rest.length - 1] as Record<string, string | undefined> | undefined;
      const keep = groups?.['keep'] ?? groups?.['keep2'];
      const secret = groups?.['secret'] ?? groups?.['secret2'];
      const marker = `${MARKER_PREFIX}${kind}]`;
      if (keep === undefined || secret === undefined) {
        counts.set(kind, (counts.get(kind) ?? 0) + 1);
        return marker;
      }
      // Already redacted (a result passed through twice): leave it.
      if (secret.includes(MARKER_PREFIX)) return match;
      counts.set(kind, (counts.get(kind) ?? 0) + 1);
      const quote = secret[0] === '"' || secret[0] === "'" ? secret[0] : '';
      return `${keep}${quote}${marker}${quote}`;
    });
  }
  return out;
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
