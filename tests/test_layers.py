"""The package's structure, measured from the source: layers, cycles, sizes, the backend seam."""

import ast
import os

import pytest

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'downhill')
#: Bottom to top; a module may import its own layer and those below.
LAYERS = ['_version', '_compat', 'backend', 'core', 'training', 'optimizer', 'algorithms', 'tools']
#: The package's front door and the table of old paths sit on top of everything.
TOP = {'downhill', 'downhill._moved'}


def _modules():
    out = {}
    for folder, _, files in os.walk(ROOT):
        for name in files:
            if name.endswith('.py'):
                path = os.path.join(folder, name)
                module = os.path.relpath(path[:-3], os.path.dirname(ROOT)).replace(os.sep, '.')
                out[module.removesuffix('.__init__')] = path
    return out


MODULES = _modules()


def _imports(module, path):
    """The downhill modules ``module`` imports (at any depth of its code)."""
    package = module if path.endswith('__init__.py') else module.rsplit('.', 1)[0]
    found = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.ImportFrom) and node.level:
            parts = package.split('.')
            base = '.'.join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            for alias in node.names:
                child = f'{base}.{alias.name}'
                found.add(child if child in MODULES else base)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith('downhill.')}
    return {m for m in found if m in MODULES and m != module}


def _layer(module):
    parts = module.split('.')
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


GRAPH = {m: _imports(m, p) for m, p in MODULES.items()}


def test_every_module_is_in_a_layer():
    assert {m for m in MODULES if _layer(m) is None} == TOP


@pytest.mark.parametrize('module', sorted(m for m in MODULES if m not in TOP))
def test_imports_go_down_only(module):
    mine = _layer(module)
    upward = {m for m in GRAPH[module] if m in TOP or _layer(m) > mine}
    assert not upward, f'{module} imports {sorted(upward)} from a layer above'


def test_no_import_cycle():
    done, active = set(), []

    def visit(module):
        if module in active:
            raise AssertionError('import cycle: ' + ' -> '.join(active[active.index(module):] + [module]))
        if module in done:
            return
        active.append(module)
        for other in GRAPH[module]:
            # a package's __init__ importing its own modules is how a package is made, not a cycle
            if not other.startswith(module + '.'):
                visit(other)
        active.pop()
        done.add(module)
    for module in GRAPH:
        visit(module)


def test_only_the_optimizer_reaches_the_backend():
    users = {m for m, deps in GRAPH.items() if any(d.startswith('downhill.backend') for d in deps)
             and not m.startswith('downhill.backend')}
    assert users == {'downhill.optimizer.base'}


def test_the_loop_and_the_algorithms_keep_to_themselves():
    algorithms = {m for m in MODULES if m.startswith('downhill.algorithms')}
    training = {m for m in MODULES if m.startswith('downhill.training')}
    assert not any(GRAPH[m] & algorithms for m in training)
    assert not any(GRAPH[m] & training for m in algorithms), 'an algorithm imports the training layer'


def test_modules_and_functions_are_short():
    long_modules, long_functions = [], []
    for module, path in MODULES.items():
        source = open(path).read()
        if source.count('\n') > 700:
            long_modules.append(module)
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if node.end_lineno - node.lineno + 1 > 80:
                    long_functions.append(f'{module}.{node.name}')
    assert not long_modules and not long_functions, (long_modules, long_functions)
