// One long-lived Python (with nbformat) answering snippets for tests: importing nbformat takes about a second.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';
import { VENV_PYTHON } from './paths.js';

// Each request runs a snippet with `data` (a string) and `root` (a folder, if the test has one) in scope; it sets `result`.
const ORACLE = `
import sys, json, io, traceback, nbformat
for line in sys.stdin:
    req = json.loads(line)
    env = {"data": req["data"], "root": req.get("root"), "json": json, "io": io, "nbformat": nbformat}
    try:
        exec(req["script"], env)
        resp = {"ok": True, "result": env.get("result", "")}
    except Exception:
        resp = {"ok": False, "error": traceback.format_exc()}
    sys.stdout.write(json.dumps(resp) + "\\n")
    sys.stdout.flush()
`;

export class PythonOracle {
  private readonly proc: ChildProcessWithoutNullStreams;
  private readonly waiting: { resolve: (s: string) => void; reject: (e: Error) => void }[] = [];
  private stderr = '';

  constructor(private readonly root: () => string | undefined = () => undefined) {
    this.proc = spawn(VENV_PYTHON, ['-c', ORACLE]);
    this.proc.stderr.on('data', (d: Buffer) => (this.stderr += d.toString()));
    createInterface({ input: this.proc.stdout }).on('line', (line) => {
      const resp = JSON.parse(line) as { ok: boolean; result?: string; error?: string };
      const w = this.waiting.shift();
      if (resp.ok) w?.resolve(resp.result ?? '');
      else w?.reject(new Error(`python failed: ${resp.error}`));
    });
    this.proc.on('exit', (code) => {
      for (const w of this.waiting.splice(0)) w.reject(new Error(`python exited (${code}): ${this.stderr}`));
    });
  }

  run(script: string, data = ''): Promise<string> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      this.proc.stdin.write(JSON.stringify({ script, data, root: this.root() }) + '\n');
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.proc.once('exit', () => resolve());
      this.proc.stdin.end();
    });
  }
}
