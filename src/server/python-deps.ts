// What each Python cell defines and reads, from a real parse (the kernel's own `ast`, after IPython's transforms).
import type { KernelSession } from '../kernel/types.js';
import { evaluateJson } from './variables.js';

/** What running one cell does to the kernel's names, as far as a static reading of the code can tell. */
export interface CellDeps {
  /** Names the cell binds, deletes or changes in place at top level (assignment, import, def, class, del, `df['x'] = …`). */
  defines: string[];
  /** The subset of `defines` the cell deletes (`del x`). */
  deletes: string[];
  /** The subset of `defines` changed in place (`df['x'] = …`, `obj.a = …`, `lst.append(…)`, `df.drop(…, inplace=True)`). */
  mutates: string[];
  /**
   * Names whose new value is computed from their value before the cell (`x += 1`, `lst.append(…)`, `del x`,
   * `df = df.drop(…)`, `df['y'] = df['y'] * 2`): running the cell alone a second time would apply the change twice,
   * so the name has to be rebuilt from the cell that created it first.
   */
  updates: string[];
  /** Names the cell reads before binding them itself (upward-exposed reads), including through its own functions. */
  reads: string[];
  /** Top-level `def`/`class` names: the globals their bodies read and change when called (a call reads them). */
  functions: Record<string, { reads: string[]; writes: string[] }>;
  /** Why the cell may read names the analysis cannot see (`%run`, `exec()`, an unknown magic), or null. */
  opaqueReads: string | null;
  /** Why the cell may change names, files or the environment in ways the analysis cannot see (`!cmd`, `%pip`, `%run`, `import *`), or null. */
  opaqueDefines: string | null;
  /** The cell does not parse (so it cannot run and changes nothing): the parser's message. */
  syntaxError: string | null;
  /** For a changed cell given its previous code: whether both parse to the same code (only comments/whitespace differ). */
  sameAsPrevious: boolean | null;
}

export interface CellSource {
  source: string;
  /** The code of the cell's last run, when it differs from `source`. */
  previous?: string | null;
}

/**
 * Runs in the kernel in a private dict. Names are resolved with Python's scoping rules: comprehension variables,
 * lambda and function parameters and function locals are not top-level definitions; a function body's reads of
 * globals happen when it is called, so they are charged to the cells that call it.
 */
const ANALYZER = String.raw`
import ast, re

try:
    from IPython.core.inputtransformer2 import TransformerManager as _TM
    _transform = _TM().transform_cell
except Exception:
    _transform = lambda s: s

_FLAGS = ast.PyCF_ONLY_AST | getattr(ast, 'PyCF_ALLOW_TOP_LEVEL_AWAIT', 0)
# Line magics that only configure the session or show information: they read and change no names.
_QUIET_LINE = frozenset('matplotlib config load_ext reload_ext unload_ext autoreload aimport precision pinfo pinfo2 pdef pdoc psource pfile who whos who_ls pwd lsmagic magic history xmode colors quickref automagic autocall pprint'.split())
# Magics whose argument or body is Python code run in the user's namespace: analysed as that code.
_CODE_LINE = frozenset(['time', 'timeit', 'prun'])
_CODE_CELL = frozenset(['time', 'timeit', 'prun', 'capture'])
# Cell magics that only display their body.
_DISPLAY_CELL = frozenset('html markdown latex javascript js svg'.split())
# Shell escapes and magics that act on files, packages, processes or the environment.
_SHELL_LINE = frozenset('system sx pip conda mamba env cd'.split())
_SHELL_CELL = frozenset('bash sh script writefile file perl ruby python python2 python3 pypy sx system'.split())
# Method names that change their object (containers, in-place frame/array operations, estimators).
_MUTATORS = frozenset('append extend insert remove pop popitem clear sort reverse update setdefault add discard difference_update intersection_update symmetric_difference_update appendleft extendleft rotate fill resize put itemset setflags fit partial_fit fit_transform set_params'.split())
# Methods called for what they show or write out, not to change their object.
# A call through any of these (df.plot.bar(), df.style.format()) is also only looked at.
_READ_ONLY = frozenset('head tail describe info plot hist boxplot bar barh scatter line pie area kde density hexbin style show savefig to_csv to_json to_parquet to_excel to_pickle to_html to_markdown to_string to_feather to_sql print display debug warning error critical exception'.split())
_OPAQUE_CALLS = frozenset(['exec', 'eval', 'globals', 'locals', '__import__'])
# match statements exist from Python 3.10; older kernels parse without them.
_MATCH_NAMED = tuple(getattr(ast, n) for n in ('MatchAs', 'MatchStar') if hasattr(ast, n))
_MATCH_MAPPING = tuple(getattr(ast, n) for n in ('MatchMapping',) if hasattr(ast, n))


def _chain(node):
    """The attribute names from a name to a method: df.plot.bar -> ['plot', 'bar']."""
    names = []
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        if isinstance(node, ast.Attribute):
            names.append(node.attr)
        node = node.value
    return names


def _base(node):
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Starred)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _text(node):
    try:
        return ast.unparse(node)
    except Exception:
        return ast.dump(node)


def _parse(src):
    return compile(_transform(src), '<cell>', 'exec', _FLAGS)


class _Scope:
    def __init__(self, kind, names=(), declared=()):
        self.kind = kind  # function | lambda | class | comp
        self.names = set(names)
        self.declared = set(declared)  # names declared global (function scopes)
        self.reads = set()
        self.writes = set()


def _target_names(node, out):
    if isinstance(node, ast.Name):
        out.add(node.id)
    elif isinstance(node, (ast.Tuple, ast.List)):
        for e in node.elts:
            _target_names(e, out)
    elif isinstance(node, ast.Starred):
        _target_names(node.value, out)


def _function_locals(node):
    """Names local to a def or lambda: parameters and every name bound in its body, minus global/nonlocal ones."""
    a = node.args
    names = {x.arg for x in a.posonlyargs + a.args + a.kwonlyargs}
    for x in (a.vararg, a.kwarg):
        if x:
            names.add(x.arg)
    declared, freed = set(), set()
    body = node.body if isinstance(node.body, list) else [node.body]
    stack = list(body)
    while stack:
        n = stack.pop()
        if isinstance(n, ast.Global):
            declared.update(n.names)
            continue
        if isinstance(n, ast.Nonlocal):
            freed.update(n.names)
            continue
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(n.name)
            stack.extend(n.decorator_list)
            continue
        if isinstance(n, ast.Lambda):
            continue
        if isinstance(n, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            for sub in ast.walk(n):
                if isinstance(sub, ast.NamedExpr):
                    _target_names(sub.target, names)
            continue
        if isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del)):
            names.add(n.id)
        elif isinstance(n, (ast.Import, ast.ImportFrom)):
            for al in n.names:
                if al.name != '*':
                    names.add(al.asname or al.name.split('.')[0])
        elif isinstance(n, ast.ExceptHandler) and n.name:
            names.add(n.name)
        elif isinstance(n, _MATCH_NAMED) and n.name:
            names.add(n.name)
        elif isinstance(n, _MATCH_MAPPING) and n.rest:
            names.add(n.rest)
        stack.extend(ast.iter_child_nodes(n))
    return names - declared - freed, declared


class _Cell(ast.NodeVisitor):
    def __init__(self, modules):
        self.modules = modules
        self.defines, self.deletes, self.mutates, self.updates, self.reads = set(), set(), set(), set(), set()
        self.bound = set()  # names this cell has surely bound at this point of its top level
        self.functions = {}  # top-level def/class name -> globals its body reads / changes when called
        self.opaque_reads = None
        self.opaque_defines = None
        self.scopes = []
        self.discarded = None  # the call whose result an expression statement throws away
        self.last = None

    # --- names -------------------------------------------------------------------------------------------
    def _local(self, n):
        for i in range(len(self.scopes) - 1, -1, -1):
            s = self.scopes[i]
            if s.kind == 'class' and i != len(self.scopes) - 1:
                continue  # a class body's names are not visible to the functions inside it
            if n in s.names:
                return True
        return False

    def _recorder(self):
        for s in reversed(self.scopes):
            if s.kind == 'function':
                return s
        return None

    def _load(self, n):
        if self._local(n):
            return
        s = self._recorder()
        if s is not None:
            s.reads.add(n)
        else:
            self._top_read(n, set())

    def _top_read(self, n, seen):
        if n not in self.bound:
            self.reads.add(n)
            return
        f = self.functions.get(n)
        if f and n not in seen:  # calling a function of this cell reads (and changes) what its body does
            seen.add(n)
            for r in f['reads']:
                self._top_read(r, seen)
            for w in f['writes']:
                if w in f['reads']:
                    self._top_change(w, True)  # changed in place (or from its old value)
                else:
                    self.defines.add(w)
                    self.bound.add(w)

    def _bind(self, n):
        if self.scopes:
            s = self.scopes[-1]
            if s.kind == 'function' and n in s.declared:
                s.writes.add(n)
            elif s.kind == 'class':
                s.names.add(n)
            return
        self.defines.add(n)
        self.functions.pop(n, None)
        self.bound.add(n)

    def _change(self, n, update):
        """n is changed in place (or deleted): it must exist, so this is also a read of it."""
        if self._local(n):
            return
        s = self._recorder()
        if s is not None:
            s.reads.add(n)
            s.writes.add(n)
            return
        self._top_change(n, update)

    def _top_change(self, n, update):
        if update and n not in self.bound:
            self.updates.add(n)
        self._top_read(n, set())
        self.defines.add(n)
        self.mutates.add(n)

    def _opaque(self, reads, defines, why):
        if reads and self.opaque_reads is None:
            self.opaque_reads = why
        if defines and self.opaque_defines is None:
            self.opaque_defines = why

    # --- statements --------------------------------------------------------------------------------------
    def run(self, body):
        saved = self.last
        # IPython shows the value of a cell's last expression: that call is looked at, not thrown away.
        self.last = body[-1] if body else None
        for stmt in body:
            self.visit(stmt)
        self.last = saved

    def _branch(self, nodes, before=None):
        """Code that may not run: what it binds is bound inside it, not after it."""
        saved = set(self.bound)
        if before is not None:
            before()
        for n in nodes:
            self.visit(n)
        self.bound = saved

    def visit_Expr(self, node):
        self.discarded = node.value if node is not self.last else None
        self.visit(node.value)
        self.discarded = None

    def visit_Assign(self, node):
        self.visit(node.value)
        for t in node.targets:
            self._assign_target(t, node.value)

    def visit_AnnAssign(self, node):
        if node.value is not None:
            self.visit(node.value)
        if not self.scopes:
            self.visit(node.annotation)
        if node.value is not None:
            self._assign_target(node.target, node.value)

    def _assign_target(self, t, value):
        if isinstance(t, ast.Name):
            if not self.scopes and t.id not in self.bound and t.id in self._names_read(value):
                self.updates.add(t.id)  # x = f(x): re-running the cell alone would apply f twice
            self._bind(t.id)
        elif isinstance(t, (ast.Tuple, ast.List)):
            for e in t.elts:
                self._assign_target(e, value)
        elif isinstance(t, ast.Starred):
            self._assign_target(t.value, value)
        elif isinstance(t, (ast.Attribute, ast.Subscript)):
            self._visit_target_parts(t)
            base = _base(t)
            if base:
                # df['y'] = df['x'] * 2 can run twice; df['y'] = df['y'] * 2 cannot.
                same = _text(t)
                self._change(base, any(_text(sub) == same for sub in ast.walk(value) if isinstance(sub, type(t))))

    def _names_read(self, node):
        return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}

    def _visit_target_parts(self, t):
        """Indices and the object expression of an attribute/subscript target are evaluated (read)."""
        if isinstance(t, ast.Subscript):
            self.visit(t.slice)
            self._visit_target_parts(t.value)
        elif isinstance(t, ast.Attribute):
            self._visit_target_parts(t.value)
        elif isinstance(t, ast.Name):
            self._load(t.id)
        else:
            self.visit(t)

    def visit_AugAssign(self, node):
        self.visit(node.value)
        t = node.target
        if isinstance(t, ast.Name):
            if self._local(t.id):
                return
            s = self._recorder() if self.scopes else None
            if self.scopes and s is not None and t.id in s.declared:
                s.reads.add(t.id)
                s.writes.add(t.id)
            elif not self.scopes:
                self._top_change(t.id, True)
                self.mutates.discard(t.id)
                self.bound.add(t.id)
        else:
            self._visit_target_parts(t)
            base = _base(t)
            if base:
                self._change(base, True)

    def visit_Delete(self, node):
        for t in node.targets:
            self._delete(t)

    def _delete(self, t):
        if isinstance(t, ast.Name):
            if self.scopes:
                s = self.scopes[-1]
                if s.kind == 'function' and t.id in s.declared:
                    s.reads.add(t.id)
                    s.writes.add(t.id)
                return
            self._top_change(t.id, True)  # del x needs x, and running it again fails
            self.mutates.discard(t.id)
            self.deletes.add(t.id)
            self.bound.discard(t.id)
        elif isinstance(t, (ast.Tuple, ast.List)):
            for e in t.elts:
                self._delete(e)
        elif isinstance(t, (ast.Attribute, ast.Subscript)):
            self._visit_target_parts(t)
            base = _base(t)
            if base:
                self._change(base, True)

    def visit_Import(self, node):
        for a in node.names:
            self._bind(a.asname or a.name.split('.')[0])

    def visit_ImportFrom(self, node):
        if node.module == '__future__':
            return
        for a in node.names:
            if a.name == '*':
                self._opaque(False, True, 'from %s import *' % (node.module or '.'))
            else:
                self._bind(a.asname or a.name)

    def visit_If(self, node):
        self.visit(node.test)
        self._branch(node.body)
        self._branch(node.orelse)

    def visit_While(self, node):
        self.visit(node.test)
        self._branch(node.body)
        self._branch(node.orelse)

    def visit_For(self, node):
        self.visit(node.iter)
        self._branch(node.body, lambda: self._assign_target(node.target, node.iter))
        self._branch(node.orelse)

    visit_AsyncFor = visit_For

    def visit_Try(self, node):
        self._branch(node.body)
        for handler in node.handlers:
            self._branch([handler])
        self._branch(node.orelse)
        for n in node.finalbody:
            self.visit(n)

    visit_TryStar = visit_Try

    def visit_ExceptHandler(self, node):
        if node.type is not None:
            self.visit(node.type)
        if node.name:
            self._bind(node.name)
        for n in node.body:
            self.visit(n)

    def visit_With(self, node):
        for item in node.items:
            self.visit(item.context_expr)
            if item.optional_vars is not None:
                self._assign_target(item.optional_vars, item.context_expr)
        for n in node.body:
            self.visit(n)

    visit_AsyncWith = visit_With

    def visit_Match(self, node):
        self.visit(node.subject)
        for case in node.cases:
            self._branch(case.body, lambda case=case: self._case(case))

    def _case(self, case):
        self.visit(case.pattern)
        if case.guard is not None:
            self.visit(case.guard)

    def visit_MatchAs(self, node):
        if node.pattern is not None:
            self.visit(node.pattern)
        if node.name:
            self._bind(node.name)

    def visit_MatchStar(self, node):
        if node.name:
            self._bind(node.name)

    def visit_MatchMapping(self, node):
        self.generic_visit(node)
        if node.rest:
            self._bind(node.rest)

    def visit_Global(self, node):
        pass

    visit_Nonlocal = visit_Global

    # --- scopes ------------------------------------------------------------------------------------------
    def visit_FunctionDef(self, node):
        for d in node.decorator_list:
            self.visit(d)
        a = node.args
        for d in a.defaults + [d for d in a.kw_defaults if d is not None]:
            self.visit(d)
        for arg in a.posonlyargs + a.args + a.kwonlyargs + [x for x in (a.vararg, a.kwarg) if x]:
            if arg.annotation is not None:
                self.visit(arg.annotation)
        if node.returns is not None:
            self.visit(node.returns)
        names, declared = _function_locals(node)
        scope = _Scope('function', names, declared)
        self.scopes.append(scope)
        for stmt in node.body:
            self.visit(stmt)
        self.scopes.pop()
        self._close(node.name, scope)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node):
        for d in node.decorator_list + node.bases + [k.value for k in node.keywords]:
            self.visit(d)
        scope = _Scope('class')
        self.scopes.append(scope)
        for stmt in node.body:
            self.visit(stmt)
        self.scopes.pop()
        self._close(node.name, scope)

    def _close(self, name, scope):
        """A def or class is done: what its bodies do when called is owed by whoever calls it."""
        outer = next((s for s in reversed(self.scopes) if s.kind in ('function', 'class')), None)
        if outer is not None:
            outer.reads |= scope.reads
            outer.writes |= scope.writes
            self._bind(name)
            return
        self._bind(name)
        self.functions[name] = {'reads': scope.reads - {name}, 'writes': set(scope.writes)}

    def visit_Lambda(self, node):
        a = node.args
        for d in a.defaults + [d for d in a.kw_defaults if d is not None]:
            self.visit(d)
        names, _ = _function_locals(node)
        self.scopes.append(_Scope('lambda', names))
        self.visit(node.body)
        self.scopes.pop()

    def _comprehension(self, node, elements):
        gens = node.generators
        # The first iterable is evaluated outside the comprehension's scope.
        self.visit(gens[0].iter)
        names = set()
        for g in gens:
            _target_names(g.target, names)
        self.scopes.append(_Scope('comp', names))
        for i, g in enumerate(gens):
            if i:
                self.visit(g.iter)
            for cond in g.ifs:
                self.visit(cond)
        for e in elements:
            self.visit(e)
        self.scopes.pop()

    def visit_ListComp(self, node):
        self._comprehension(node, [node.elt])

    visit_SetComp = visit_GeneratorExp = visit_ListComp

    def visit_DictComp(self, node):
        self._comprehension(node, [node.key, node.value])

    def visit_NamedExpr(self, node):
        self.visit(node.value)
        # := binds in the enclosing function or module, even inside a comprehension.
        saved = self.scopes
        while self.scopes and self.scopes[-1].kind == 'comp':
            self.scopes = self.scopes[:-1]
        self._assign_target(node.target, node.value)
        self.scopes = saved

    # --- expressions -------------------------------------------------------------------------------------
    def visit_Name(self, node):
        if isinstance(node.ctx, ast.Load):
            self._load(node.id)
        elif isinstance(node.ctx, ast.Store):
            self._bind(node.id)
        else:
            self._delete(node)

    def visit_Call(self, node):
        f = node.func
        discarded = self.discarded is node
        self.discarded = None
        if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Call) and isinstance(f.value.func, ast.Name) and f.value.func.id == 'get_ipython':
            self._ipython(f.attr, node)
            return
        if isinstance(f, ast.Name) and f.id in _OPAQUE_CALLS and not self._local(f.id):
            self._opaque(True, True, '%s()' % f.id)
        if isinstance(f, ast.Name) and f.id == 'vars' and not node.args:
            self._opaque(True, True, 'vars()')
        if isinstance(f, ast.Name) and f.id in ('setattr', 'delattr') and node.args:
            base = _base(node.args[0])
            if base:
                self._change(base, f.id == 'delattr')
        self.generic_visit(node)
        if isinstance(f, ast.Attribute):
            base = _base(f.value)
            if base and base not in self.modules:
                inplace = any(k.arg == 'inplace' and isinstance(k.value, ast.Constant) and k.value.value is True for k in node.keywords)
                if inplace or f.attr in _MUTATORS or (discarded and not _READ_ONLY.intersection(_chain(f))):
                    self._change(base, True)

    # --- IPython ------------------------------------------------------------------------------------------
    def _ipython(self, method, node):
        args = node.args
        consts = [a.value for a in args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        if len(consts) != len(args) or node.keywords:
            self._opaque(True, True, 'get_ipython().%s(...)' % method)
            self.generic_visit(node)
            return
        if method in ('system', 'getoutput') and consts:
            self._expansions(consts[0])
            self._opaque(False, True, 'shell command !%s' % consts[0][:60])
        elif method == 'run_line_magic' and len(consts) == 2:
            self._line_magic(consts[0], consts[1])
        elif method == 'run_cell_magic' and len(consts) == 3:
            self._cell_magic(consts[0], consts[1], consts[2])
        else:
            self._opaque(True, True, 'get_ipython().%s(...)' % method)

    def _expansions(self, text):
        """IPython expands $name and {expression} in shell commands and magic lines with the user's values."""
        for m in re.finditer(r'(?<!\$)\$([A-Za-z_]\w*)', text):
            self._load(m.group(1))
        for m in re.finditer(r'\{([^{}]+)\}', text):
            try:
                tree = ast.parse(m.group(1).strip(), mode='eval')
            except SyntaxError:
                continue
            self.visit(tree)

    def _code(self, code):
        """Python code that a magic runs in the user's namespace; False when it does not parse."""
        tokens = code.split()
        # Leading options (-n 10, -r1, -q) are dropped until the rest parses.
        for k in range(len(tokens)):
            if k and not tokens[0].startswith('-'):
                break
            try:
                tree = _parse(' '.join(tokens[k:]))
            except SyntaxError:
                continue
            self.run(tree.body)
            return True
        return False

    def _line_magic(self, name, line):
        why = '%%%s %s' % (name, line[:60]) if line else '%' + name
        if name in _QUIET_LINE:
            return
        if name in _CODE_LINE:
            if not self._code(line):
                self._opaque(True, True, why)
            return
        self._expansions(line)
        if name in _SHELL_LINE:
            self._opaque(False, True, why)
        else:
            self._opaque(True, True, why)

    def _cell_magic(self, name, line, body):
        why = '%%%%%s' % name
        if name in _DISPLAY_CELL:
            return
        if name in _CODE_CELL:
            if name == 'capture':
                target = next((t for t in line.split() if not t.startswith('-')), None)
                if target and target.isidentifier():
                    self._bind(target)
            elif name == 'timeit' and line.strip():
                self._code(line)
            try:
                tree = _parse(body)
            except SyntaxError:
                self._opaque(True, True, why)
                return
            self.run(tree.body)
            return
        self._opaque(name not in _SHELL_CELL, True, why)


def _module_aliases(trees):
    """Names that only ever hold a module: calling their methods changes nothing we track."""
    imported, bound = set(), set()
    for tree in trees:
        if tree is None:
            continue
        for n in ast.walk(tree):
            if isinstance(n, ast.Import):
                for a in n.names:
                    imported.add(a.asname or a.name.split('.')[0])
            elif isinstance(n, ast.ImportFrom):
                for a in n.names:
                    if a.asname or a.name != '*':
                        bound.add(a.asname or a.name)
            elif isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del)):
                bound.add(n.id)
            elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                bound.add(n.name)
    return imported - bound


def _same_code(a, b):
    try:
        return ast.dump(_parse(a)) == ast.dump(_parse(b))
    except Exception:
        return False


def analyze(cells):
    trees, errors = [], []
    for cell in cells:
        try:
            trees.append(_parse(cell['source']))
            errors.append(None)
        except SyntaxError as e:
            trees.append(None)
            errors.append('%s (line %s)' % (e.msg, e.lineno))
        except Exception as e:
            trees.append(None)
            errors.append('%s: %s' % (type(e).__name__, e))
    modules = _module_aliases(trees)
    out = []
    for cell, tree, error in zip(cells, trees, errors):
        previous = cell.get('previous')
        same = _same_code(cell['source'], previous) if isinstance(previous, str) else None
        if tree is None:
            out.append({'defines': [], 'deletes': [], 'mutates': [], 'updates': [], 'reads': [], 'functions': {}, 'opaqueReads': None, 'opaqueDefines': None, 'syntaxError': error, 'sameAsPrevious': same})
            continue
        v = _Cell(modules)
        v.run(tree.body)
        out.append({
            'defines': sorted(v.defines),
            'deletes': sorted(v.deletes),
            'mutates': sorted(v.mutates),
            'updates': sorted(v.updates),
            'reads': sorted(v.reads - {'get_ipython'}),
            'functions': {k: {'reads': sorted(f['reads']), 'writes': sorted(f['writes'])} for k, f in sorted(v.functions.items())},
            'opaqueReads': v.opaque_reads,
            'opaqueDefines': v.opaque_defines,
            'syntaxError': None,
            'sameAsPrevious': same,
        })
    return out
`;

/** Analyses the cells' code in the kernel, out of band (no history, no execution count, nothing added to the user's namespace). */
export async function analyzePythonCells(session: KernelSession, cells: Array<string | CellSource>, timeoutMs: number): Promise<CellDeps[]> {
  const payload = cells.map((cell) => (typeof cell === 'string' ? { source: cell } : { source: cell.source, previous: cell.previous ?? null }));
  // JSON inside a Python string literal: json.loads turns null/true into None/True, which a bare JSON literal would not.
  const call = `analyze(__import__('json').loads(${JSON.stringify(JSON.stringify(payload))}))`;
  return (await evaluateJson(session, ANALYZER, call, timeoutMs)) as CellDeps[];
}
