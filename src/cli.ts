#!/usr/bin/env node
// Entry point: `serve` (MCP over stdio or Streamable HTTP), `run` (execute a notebook headless), `doctor`.
import { constants } from 'node:os';
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from './config.js';
import { diagnose, formatFindings } from './commands/doctor.js';
import { RunInputError, runNotebook } from './commands/run.js';
import { NotebookFormatError } from './notebook/nbformat.js';

const USAGE = `usage:
  mcp-server-jupyter serve [--workspace DIR] [--http [HOST:]PORT] [--token T] [--state-dir DIR]
                           [--jupyter-url URL --jupyter-token T [--jupyter-header 'Name: value']... [--jupyter-ca FILE]]
                           [--resume-on-new-kernel] [--allowed-host HOST:PORT]... [--allowed-origin ORIGIN]...
  mcp-server-jupyter run NOTEBOOK [--output OUT] [--kernel NAME] [--timeout S] [--allow-errors]
  mcp-server-jupyter doctor [--workspace DIR]
`;

function fail(message: string, code = 2): never {
  process.stderr.write(`mcp-server-jupyter: ${message}\n`);
  process.exit(code);
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'run': {
      const { values, positionals } = parseArgs({
        args: rest,
        allowPositionals: true,
        options: {
          output: { type: 'string', short: 'o' },
          kernel: { type: 'string' },
          timeout: { type: 'string' },
          'allow-errors': { type: 'boolean', default: false },
          'state-dir': { type: 'string' },
        },
      });
      const notebook = positionals[0];
      if (!notebook || positionals.length > 1) fail(`run takes exactly one notebook\n${USAGE}`);
      let timeoutS: number | undefined;
      if (values.timeout !== undefined) {
        timeoutS = Number(values.timeout);
        if (!Number.isFinite(timeoutS) || timeoutS <= 0) fail(`--timeout takes a number of seconds greater than 0, got '${values.timeout}'`);
      }
      // The kernel runs in its own process group, so Ctrl-C reaches only us: stop the run and shut it down ourselves.
      const controller = new AbortController();
      const onSignal = (signal: NodeJS.Signals): void => {
        if (controller.signal.aborted) {
          process.stderr.write(`\n${signal}: already stopping; the kernel is shut down within a few seconds.\n`);
          return;
        }
        process.stderr.write(`\n${signal}: interrupting the running cell and shutting the kernel down...\n`);
        controller.abort(signal);
      };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      const result = await runNotebook(
        {
          notebook,
          output: values.output,
          kernel: values.kernel,
          timeoutS,
          allowErrors: values['allow-errors'] === true,
          stateDir: values['state-dir'],
          signal: controller.signal,
        },
        process.stderr,
      );
      if (result.aborted) {
        const signal = controller.signal.reason as NodeJS.Signals;
        return 128 + (constants.signals[signal] ?? constants.signals.SIGINT);
      }
      return result.exitCode;
    }
    case 'doctor': {
      const { values } = parseArgs({ args: rest, options: { workspace: { type: 'string' }, 'state-dir': { type: 'string' } } });
      const config = loadConfig({ workspace: values.workspace, stateDir: values['state-dir'] });
      const findings = await diagnose(config);
      process.stdout.write(formatFindings(findings));
      return findings.every((finding) => finding.ok) ? 0 : 1;
    }
    case 'serve': {
      const { serve } = await import('./commands/serve.js');
      return serve(rest);
    }
    case undefined:
    case '-h':
    case '--help':
    case 'help':
      process.stdout.write(USAGE);
      return command === undefined ? 2 : 0;
    default:
      fail(`unknown command '${command}'\n${USAGE}`);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    if (error instanceof RunInputError || error instanceof NotebookFormatError || error instanceof ConfigError) fail(error.message);
    if (error instanceof TypeError && 'code' in error && String((error as NodeJS.ErrnoException).code).startsWith('ERR_PARSE_ARGS')) fail(`${error.message}\n${USAGE}`);
    fail(error instanceof Error ? (error.stack ?? error.message) : String(error), 1);
  },
);
