// Out-of-band variable inspection for Python kernels: a silent request whose result rides in user_expressions.
import type { KernelSession } from '../kernel/types.js';

/**
 * Runs in the kernel in a private dict (nothing is added to the user's namespace, history or execution count).
 * Only names are looked up — in `user_ns`, never through eval — and every description is bounded, so a
 * 10-million-row frame costs its `head()` and `dtypes`, not a pass over the data.
 */
const PYTHON_INSPECTOR = String.raw`
import json, reprlib, sys, types
ip = get_ipython()
ns = ip.user_ns
hidden = getattr(ip, 'user_ns_hidden', {})
_repr = reprlib.Repr()
_repr.maxstring = 200
_repr.maxother = 200
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = 10

def _shape(v):
    shape = getattr(v, 'shape', None)
    if isinstance(shape, tuple) and all(isinstance(n, int) for n in shape):
        return list(shape)
    return None

def _length(v):
    if isinstance(v, (str, bytes, list, tuple, dict, set, frozenset, range)):
        return len(v)
    return None

def _summary(v):
    shape = _shape(v)
    if shape is not None:
        return 'shape ' + 'x'.join(str(n) for n in shape)
    n = _length(v)
    if n is not None:
        return 'length %d' % n
    if isinstance(v, (int, float, complex, bool)):
        return repr(v)[:80]
    return ''

def _is_user(name, v):
    if name.startswith('_') or name in hidden:
        return False
    if isinstance(v, types.ModuleType):
        return False
    if name in ('In', 'Out', 'exit', 'quit', 'get_ipython'):
        return False
    return True

def list_variables(limit):
    out = []
    for name, v in list(ns.items()):
        if not _is_user(name, v):
            continue
        t = type(v)
        out.append({'name': name, 'type': t.__name__, 'module': t.__module__, 'summary': _summary(v)})
        if len(out) >= limit:
            break
    return {'variables': out, 'total': sum(1 for k, v in list(ns.items()) if _is_user(k, v))}

def inspect_variable(name, max_chars):
    if name not in ns:
        return {'error': 'not_found'}
    v = ns[name]
    t = type(v)
    d = {'name': name, 'type': t.__name__, 'module': t.__module__}
    shape = _shape(v)
    if shape is not None:
        d['shape'] = shape
    n = _length(v)
    if n is not None:
        d['length'] = n
    mod = t.__module__ or ''
    try:
        if mod.startswith('pandas') and t.__name__ == 'DataFrame':
            import pandas as pd
            d['columns'] = [str(c) for c in list(v.columns[:50])]
            d['column_count'] = int(v.shape[1])
            d['dtypes'] = {str(c): str(dt) for c, dt in list(v.dtypes.items())[:50]}
            with pd.option_context('display.max_columns', 20, 'display.width', 160, 'display.max_colwidth', 40):
                d['head'] = v.head(5).to_string()[:max_chars]
        elif mod.startswith('pandas') and t.__name__ == 'Series':
            import pandas as pd
            d['dtype'] = str(v.dtype)
            d['series_name'] = str(v.name)
            with pd.option_context('display.max_colwidth', 60):
                d['head'] = v.head(10).to_string()[:max_chars]
        elif mod.startswith('numpy') and t.__name__ == 'ndarray':
            import numpy as np
            d['dtype'] = str(v.dtype)
            d['preview'] = np.array2string(v, threshold=20, edgeitems=3, max_line_width=160)[:max_chars]
        elif isinstance(v, str):
            d['preview'] = v[:max_chars]
        elif isinstance(v, (types.FunctionType, types.BuiltinFunctionType, type)):
            import inspect
            try:
                d['signature'] = str(inspect.signature(v))[:500]
            except (TypeError, ValueError):
                pass
            doc = inspect.getdoc(v) or ''
            d['doc'] = doc[:1000]
        else:
            d['preview'] = _repr.repr(v)[:max_chars]
    except Exception as e:
        d['preview_error'] = '%s: %s' % (type(e).__name__, str(e)[:200])
    return d
`;

/** A Python expression that runs `program` plus `call` in a private dict and returns the call's result as JSON. */
function expressionFor(program: string, call: string): string {
  const whole = `${program}\nimport json as __json\n__result = __json.dumps(${call}, default=str)\n`;
  return `(lambda d: (exec(${JSON.stringify(whole)}, d), d['__result'])[1])({'__builtins__': __builtins__, 'get_ipython': get_ipython})`;
}

/** Decodes the `text/plain` repr of a Python str that holds ASCII JSON (json.dumps escapes all non-ASCII). */
export function decodePythonStrRepr(repr: string): string {
  const quote = repr[0];
  if ((quote !== "'" && quote !== '"') || repr[repr.length - 1] !== quote) throw new Error(`unexpected repr: ${repr.slice(0, 80)}`);
  return repr.slice(1, -1).replace(/\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|.)/g, (_match, escape: string) => {
    if (escape.startsWith('x') || escape.startsWith('u')) return String.fromCharCode(parseInt(escape.slice(1), 16));
    switch (escape) {
      case 'n':
        return '\n';
      case 't':
        return '\t';
      case 'r':
        return '\r';
      default:
        return escape;
    }
  });
}

export class InspectionError extends Error {}

const PYTHON_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const PYTHON_KEYWORDS = new Set(
  'False None True and as assert async await break class continue def del elif else except finally for from global if import in is lambda nonlocal not or pass raise return try while with yield'.split(' '),
);

export function validateVariableName(name: string): void {
  if (!PYTHON_NAME.test(name) || PYTHON_KEYWORDS.has(name)) {
    throw new InspectionError(`'${name.slice(0, 80)}' is not a variable name: give one identifier (letters, digits, _), as list_variables shows it. Expressions are never evaluated.`);
  }
}

/**
 * Runs `program` and then evaluates `call` in the kernel, out of band: a silent request (no history, no
 * execution count, no outputs) whose JSON result comes back in user_expressions.
 */
export async function evaluateJson(session: KernelSession, program: string, call: string, timeoutMs: number): Promise<unknown> {
  if (session.info && session.info.languageName.toLowerCase() !== 'python') {
    throw new InspectionError(`variable inspection supports Python kernels; this kernel runs ${session.info.languageName}. Use execute_code to look at values.`);
  }
  const reply = await session.request(
    'shell',
    'execute_request',
    { code: '', silent: true, store_history: false, user_expressions: { result: expressionFor(program, call) }, allow_stdin: false, stop_on_error: false },
    timeoutMs,
  );
  const expressions = reply.content.user_expressions as Record<string, { status?: string; data?: Record<string, unknown>; ename?: string; evalue?: string }> | undefined;
  const outcome = expressions?.result;
  if (!outcome || outcome.status !== 'ok') {
    throw new InspectionError(`the kernel could not inspect variables: ${outcome?.ename ?? 'no answer'}: ${outcome?.evalue ?? ''}`);
  }
  const text = outcome.data?.['text/plain'];
  if (typeof text !== 'string') throw new InspectionError('the kernel answered without a text result');
  return JSON.parse(decodePythonStrRepr(text)) as unknown;
}

export interface VariableSummary {
  name: string;
  type: string;
  module: string;
  summary: string;
}

export async function listVariables(session: KernelSession, timeoutMs: number, limit = 500): Promise<{ variables: VariableSummary[]; total: number }> {
  return (await evaluateJson(session, PYTHON_INSPECTOR, `list_variables(${Math.floor(limit)})`, timeoutMs)) as { variables: VariableSummary[]; total: number };
}

export async function inspectVariable(session: KernelSession, name: string, timeoutMs: number, maxChars: number): Promise<Record<string, unknown>> {
  validateVariableName(name);
  const described = (await evaluateJson(session, PYTHON_INSPECTOR, `inspect_variable(${JSON.stringify(name)}, ${Math.floor(maxChars)})`, timeoutMs)) as Record<string, unknown>;
  if (described.error === 'not_found') throw new InspectionError(`there is no variable '${name}' in the kernel. list_variables shows what is defined.`);
  return described;
}
