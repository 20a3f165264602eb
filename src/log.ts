// Structured logs: one JSON object per line on stderr (stdout belongs to the MCP protocol in stdio mode).

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type Logger = (level: LogLevel, message: string, fields?: Record<string, unknown>) => void;

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export function createLogger(minimum: LogLevel, write: (line: string) => void = (line) => process.stderr.write(line)): Logger {
  return (level, message, fields) => {
    if (RANK[level] < RANK[minimum]) return;
    write(`${JSON.stringify({ time: new Date().toISOString(), level, msg: message, ...fields })}\n`);
  };
}

export const silentLogger: Logger = () => undefined;
