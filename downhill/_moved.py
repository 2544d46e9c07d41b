"""The import paths of downhill 0.6's flat layout, kept working after the move into layers.

``import downhill.dataset`` (or ``from downhill.compile import ...``, or a
``mock.patch('downhill.checkpoint.write')``) gets the module itself from its
new home: the same module object, so a patch through the old path patches it.
Nothing is imported until the old name is: importing downhill does not load
the tools (click, matplotlib, PyMC) through this table.
"""

import importlib
import importlib.abc
import importlib.util
import sys

#: Old module name (under ``downhill.``) -> new one.
MOVED = {
    'compile': 'backend.compile', 'quick': 'backend.quick', 'fusion': 'backend.fusion',
    'stencil': 'backend.stencil', 'fused_sums': 'backend.fused_sums', 'fast_tanh': 'backend.fast_tanh',
    'generated_loops': 'backend.generated_loops',
    'graph': 'core.graph', 'hyperparams': 'core.hyperparams', 'transforms': 'core.transforms',
    'schedules': 'core.schedules', 'prox': 'core.prox', 'nonfinite': 'core.nonfinite',
    'dataset': 'training.dataset', 'diagnose': 'training.diagnose', 'checkpoint': 'training.checkpoint',
    'interrupts': 'training.interrupts', 'logs': 'training.logs',
    'base': 'optimizer.base',
    'first_order': 'algorithms.first_order', 'adaptive': 'algorithms.adaptive', 'modern': 'algorithms.modern',
    'second_order': 'algorithms.second_order', 'objective': 'algorithms.objective',
    'linesearch': 'algorithms.linesearch',
    'cli': 'tools.cli', 'plot': 'tools.plot', 'landscapes': 'tools.landscapes', 'pymc': 'tools.pymc',
    'sweep': 'tools.sweep', 'multistart': 'tools.multistart', 'minimize': 'tools.minimize',
}


class _OldPath(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``downhill.OLD`` and loads it as the module ``downhill.NEW``."""

    def find_spec(self, name, path=None, target=None):
        package, _, old = name.partition('.')
        if package != __package__ or old not in MOVED:
            return None
        return importlib.util.spec_from_loader(name, self)

    def create_module(self, spec):
        return None  # a placeholder, replaced in sys.modules by exec_module

    def get_code(self, fullname):
        # ``python -m downhill.cli``: runpy runs this code as __main__; it runs the new module so
        package, _, old = fullname.partition('.')
        target = f'{package}.{MOVED[old]}'
        return compile(f'import runpy\nrunpy.run_module({target!r}, run_name="__main__", alter_sys=True)\n',
                       f'<{fullname}: {target}>', 'exec')

    def exec_module(self, module):
        # the import system returns what sys.modules holds under the name after this
        package, _, old = module.__name__.partition('.')
        sys.modules[module.__name__] = importlib.import_module(f'{package}.{MOVED[old]}')


def install():
    """Make the old paths importable (once per process).

    The old names of modules imported already are entered in ``sys.modules``
    now: a module found there is not set again as an attribute of the
    package, so ``import downhill.minimize`` leaves the function
    ``downhill.minimize`` as it is (the flat layout had the same names for
    the module and its function).
    """
    for old, new in MOVED.items():
        module = sys.modules.get(f'{__package__}.{new}')
        if module is not None:
            sys.modules.setdefault(f'{__package__}.{old}', module)
    if not any(isinstance(finder, _OldPath) for finder in sys.meta_path):
        sys.meta_path.append(_OldPath())
