// What each Python cell defines and reads, from a real parse (the kernel's own `ast`, after IPython's transforms).
import type { KernelSession } from '../kernel/types.js';
import { evaluateJson } from './variables.js';

export interface CellDeps {
  /** Names the cell binds or mutates at top level (assignment, import, def, class, del, `df['x'] = …`, global). */
  defines: string[];
  /** Names the cell reads anywhere (function bodies included: they read globals when called). */
  reads: string[];
  /** The cell has magics or shell escapes whose effects cannot be known: it is treated as reading everything. */
  opaque: boolean;
  /** The cell does not parse; it is re-run whenever anything above it is. */
  syntaxError: string | null;
}

const ANALYZER = String.raw`
import ast
try:
    from IPython.core.inputtransformer2 import TransformerManager
    _transform = TransformerManager().transform_cell
except Exception:
    _transform = lambda s: s

class _Deps(ast.NodeVisitor):
    def __init__(self):
        self.defines, self.reads, self.depth, self.opaque = set(), set(), 0, False
    def _scoped(self, node):
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1
    def visit_FunctionDef(self, node):
        if self.depth == 0:
            self.defines.add(node.name)
        for d in node.decorator_list:
            self.visit(d)
        for d in node.args.defaults + [d for d in node.args.kw_defaults if d is not None]:
            self.visit(d)
        self.depth += 1
        for stmt in node.body:
            self.visit(stmt)
        self.depth -= 1
    visit_AsyncFunctionDef = visit_FunctionDef
    def visit_ClassDef(self, node):
        if self.depth == 0:
            self.defines.add(node.name)
        for b in node.bases + node.decorator_list:
            self.visit(b)
        self.depth += 1
        for stmt in node.body:
            self.visit(stmt)
        self.depth -= 1
    def visit_Lambda(self, node):
        self._scoped(node)
    def visit_ListComp(self, node):
        self._scoped(node)
    visit_SetComp = visit_DictComp = visit_GeneratorExp = visit_ListComp
    def visit_Global(self, node):
        self.defines.update(node.names)
    def visit_Import(self, node):
        if self.depth == 0:
            for a in node.names:
                self.defines.add(a.asname or a.name.split('.')[0])
    def visit_ImportFrom(self, node):
        if self.depth == 0:
            for a in node.names:
                if a.name == '*':
                    self.opaque = True
                else:
                    self.defines.add(a.asname or a.name)
    def visit_Name(self, node):
        if isinstance(node.ctx, ast.Load):
            self.reads.add(node.id)
        elif self.depth == 0:
            self.defines.add(node.id)
    def _base(self, node):
        while isinstance(node, (ast.Attribute, ast.Subscript)):
            node = node.value
        return node.id if isinstance(node, ast.Name) else None
    def _mutation(self, node):
        if isinstance(node.ctx, (ast.Store, ast.Del)) and self.depth == 0:
            base = self._base(node)
            if base:
                self.defines.add(base)
                self.reads.add(base)
        self.generic_visit(node)
    visit_Attribute = visit_Subscript = _mutation
    def visit_AugAssign(self, node):
        if isinstance(node.target, ast.Name):
            self.reads.add(node.target.id)
        self.generic_visit(node)
    def visit_Call(self, node):
        f = node.func
        if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Call) and isinstance(f.value.func, ast.Name) and f.value.func.id == 'get_ipython':
            self.opaque = True
        self.generic_visit(node)

def analyze(sources):
    out = []
    for src in sources:
        try:
            tree = ast.parse(_transform(src))
        except SyntaxError as e:
            out.append({'defines': [], 'reads': [], 'opaque': True, 'syntaxError': '%s (line %s)' % (e.msg, e.lineno)})
            continue
        v = _Deps()
        v.visit(tree)
        out.append({'defines': sorted(v.defines), 'reads': sorted(v.reads - {'get_ipython'}), 'opaque': v.opaque, 'syntaxError': None})
    return out
`;

export async function analyzePythonCells(session: KernelSession, sources: string[], timeoutMs: number): Promise<CellDeps[]> {
  return (await evaluateJson(session, ANALYZER, `analyze(${JSON.stringify(sources)})`, timeoutMs)) as CellDeps[];
}
