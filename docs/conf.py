"""Sphinx configuration for the downhill documentation.

Build with ``python -m sphinx -W --keep-going -b html docs docs/_build/html``
(or ``python docs/build.py``). Needs the ``docs`` extra:
``pip install -e .[docs]``.

The race pictures and tables are made during the build (``downhill-race``
below, docs/make_gallery.py), and MathJax is copied from the docs extra into
the output (``_copy_mathjax``), so the source tree stays as committed and the
pages need no network.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import downhill  # noqa: E402

project = 'downhill'
author = 'The downhill developers'
copyright = 'the downhill developers; MIT license'
version = release = downhill.__version__

extensions = [
    'sphinx.ext.autodoc',
    'sphinx.ext.napoleon',
    'sphinx.ext.mathjax',
    'sphinx_click',
]

# The algorithm docstrings use numpydoc sections (Parameters, References, ...).
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
napoleon_use_ivar = True

autodoc_member_order = 'bysource'
autodoc_typehints = 'none'
autodoc_default_options = {'show-inheritance': False}

templates_path = []
exclude_patterns = ['_build', 'Thumbs.db', '.DS_Store']
master_doc = 'index'
language = 'en'
pygments_style = 'sphinx'

html_theme = 'alabaster'
html_static_path = ['_static']
html_theme_options = {
    'description': 'Minimize PyTensor losses with stochastic gradient methods',
    'fixed_sidebar': True,
    'page_width': '1100px',
    'sidebar_width': '230px',
}
html_title = f'downhill {release}'

# ----------------------------------------------------------------------------
# Math: MathJax ships with the pages, so equations render without a network.
#
# sphinx.ext.mathjax loads MathJax from a CDN unless mathjax_path names a file
# of the build. The django-static-mathjax package (in the ``docs`` extra) is
# MathJax's own distribution (mathjax-full 3.2.2) packaged as data files;
# nothing of Django is imported. Its SVG component draws every glyph itself,
# with no web fonts to fetch, so pages opened from the disk render in every
# browser. The folders it loads on demand come along: the TeX extensions
# (autoloaded by commands such as \cancel), the menu and the accessibility
# tools (speech, the expression explorer).

import shutil  # noqa: E402

from sphinx.errors import ConfigError  # noqa: E402

MATHJAX_COMPONENT = 'tex-svg.js'
MATHJAX_PARTS = [MATHJAX_COMPONENT, 'input/tex/extensions', 'ui', 'a11y', 'sre']
mathjax_path = f'mathjax/{MATHJAX_COMPONENT}'   # in _static: see _copy_mathjax


def _mathjax_root():
    try:
        import mathjax   # the django-static-mathjax distribution
    except ImportError:
        raise ConfigError('building the docs needs MathJax, from the django-static-mathjax '
                          'package: pip install -e .[docs]') from None
    root = os.path.join(os.path.dirname(mathjax.__file__), 'static', 'mathjax')
    if not os.path.isfile(os.path.join(root, 'es5', MATHJAX_COMPONENT)):
        raise ConfigError(f'{root} has no es5/{MATHJAX_COMPONENT}: pip install -e .[docs] '
                          '(django-static-mathjax 3.x)')
    return root


MATHJAX_ROOT = _mathjax_root()


def _copy_mathjax(app, exc):
    if exc is not None or app.builder.format != 'html':
        return
    target = os.path.join(app.outdir, '_static', 'mathjax')
    for part in MATHJAX_PARTS:
        source = os.path.join(MATHJAX_ROOT, 'es5', part)
        if os.path.isdir(source):
            shutil.copytree(source, os.path.join(target, part), dirs_exist_ok=True)
        else:
            os.makedirs(os.path.dirname(os.path.join(target, part)), exist_ok=True)
            shutil.copyfile(source, os.path.join(target, part))
    shutil.copyfile(os.path.join(MATHJAX_ROOT, 'LICENSE'), os.path.join(target, 'LICENSE'))

# docs/pymc.rst is written separately. It is in the table of contents when the
# file exists; until then the entry is left out, so the build stays clean.
PYMC_PAGE = os.path.join(HERE, 'pymc.rst')

# ----------------------------------------------------------------------------
# Pages derived from the code, so the docs follow the algorithm registry.
#
# Every registered algorithm without a hand-written page in docs/algorithms/
# gets a generated one (docs/algorithms/auto-NAME.rst, not committed): its
# docstring through autoclass, citing every reference the docstring lists.

import inspect  # noqa: E402
import re  # noqa: E402

sys.path.insert(0, HERE)
sys.dont_write_bytecode, _saved = True, sys.dont_write_bytecode   # no docs/__pycache__
import make_gallery  # noqa: E402
sys.dont_write_bytecode = _saved

ALGO_DIR = os.path.join(HERE, 'algorithms')


def _extra_algorithms():
    extra = {}
    for name, cls in downhill.algorithms().items():
        if not os.path.exists(os.path.join(ALGO_DIR, f'{name}.rst')):
            extra[name] = cls
    return extra


def _write_generated_pages():
    extra = _extra_algorithms()
    for old in os.listdir(ALGO_DIR):
        if old.startswith('auto-') and old.endswith('.rst') and old[5:-4] not in extra:
            os.remove(os.path.join(ALGO_DIR, old))
    for name, cls in extra.items():
        doc = inspect.getdoc(cls) or name
        summary = doc.splitlines()[0].strip().rstrip('.')
        title = f'{cls.__name__}: {summary}' if not summary.startswith(cls.__name__) else summary
        labels = re.findall(r'^\s*\.\. \[(\w+)\]', doc, re.M)
        cites = ' '.join(f'[{label}]_' for label in labels)
        text = [title, '=' * len(title), '', f"``algo='{name}'``", '']
        if cites:
            text += [f'References: {cites}.', '']
        text += ['.. downhill-race:: rosenbrock', f'   :algo: {name}',
                 f'   :alt: {cls.__name__} on the Rosenbrock function', '',
                 f'*{cls.__name__} alone on the Rosenbrock function, with its race defaults:* '
                 f'``{make_gallery.command("rosenbrock", name)}``.', '']
        text += [f'.. autoclass:: {cls.__module__}.{cls.__qualname__}', '']
        path = os.path.join(ALGO_DIR, f'auto-{name}.rst')
        content = '\n'.join(text)
        if not os.path.exists(path) or open(path).read() != content:
            with open(path, 'w') as f:   # only when changed, so incremental builds stay valid
                f.write(content)


_write_generated_pages()


def _edit_sources(app, docname, source):
    if docname == 'index' and not os.path.exists(PYMC_PAGE):
        source[0] = '\n'.join(line for line in source[0].split('\n') if line.strip() != 'pymc')
    if docname == 'algorithms/index':
        extra = ''.join(f'   auto-{name}\n' for name in _extra_algorithms())
        source[0] = source[0].rstrip('\n') + '\n' + extra


# ----------------------------------------------------------------------------
# Race pictures, made at build time by docs/make_gallery.py (nothing committed):
#
#   .. downhill-race:: LANDSCAPE
#      :algo: NAME   one algorithm: downhill race LANDSCAPE -a NAME --plot NAME.png
#                    (default: every algorithm, downhill race LANDSCAPE --plot ...)
#      :output:      show the command and the table it printed above the picture
#      :alt: TEXT
#
# The results live in the build's doctree folder, keyed by the code that makes
# them (make_gallery.inputs_key). A page that shows one depends on the key
# file, which is rewritten whenever the key changes, so Sphinx reads such a
# page again (and reruns its race) exactly when the code has changed.

from docutils import nodes  # noqa: E402
from docutils.parsers.rst import directives  # noqa: E402
from sphinx.util.docutils import SphinxDirective  # noqa: E402

_GALLERY = {}


def _open_gallery(app):
    _GALLERY['current'] = make_gallery.Gallery(os.path.join(app.doctreedir, 'downhill-race'))


class RaceDirective(SphinxDirective):
    required_arguments = 1
    option_spec = {
        'algo': directives.unchanged_required,
        'output': directives.flag,
        'alt': directives.unchanged,
    }

    def run(self):
        gallery = _GALLERY['current']
        landscape, algo = self.arguments[0], self.options.get('algo')
        try:
            result = gallery.race(landscape, algo)
        except Exception as err:  # a failing race is a failing build
            raise self.error(f'{make_gallery.command(landscape, algo)}: {err}') from None
        self.env.note_dependency(gallery.key_file)
        found = []
        if 'output' in self.options:
            text = f'$ {result["command"]}\n{result["output"]}'
            block = nodes.literal_block(text, text, language='console')
            self.set_source_info(block)
            found.append(block)
        page_dir = os.path.dirname(str(self.env.doc2path(self.env.docname)))
        uri = os.path.relpath(result['picture'], page_dir).replace(os.sep, '/')
        alt = self.options.get('alt') or f'downhill race {landscape}'
        found.append(nodes.image(uri=uri, alt=alt, width='100%'))
        return found


def _keyword_table():
    """reST for a table of every keyword iterate() accepts, read from the code."""
    from downhill.tools import cli
    algos = downhill.algorithms()
    rows = []
    for key, default in cli.loop_keywords().items():
        rows.append((key, default, 'the training loop'))
    common = cli.hyperparameters(downhill.Optimizer)
    for key, default in common.items():
        rows.append((key, default, 'every algorithm'))
    seen = {}
    for name, cls in algos.items():
        for key, default in cli.hyperparameters(cls, common=False).items():
            seen.setdefault((key, repr(default)), (key, default, []))[2].append(name)
    for key, default, names in seen.values():
        rows.append((key, default, ', '.join(names)))
    lines = ['.. list-table::', '   :header-rows: 1', '   :widths: 25 15 60', '',
             '   * - keyword', '     - default', '     - used by']
    for key, default, users in rows:
        value = f'{default:g}' if isinstance(default, float) else repr(default)
        lines += [f'   * - ``{key}``', f'     - ``{value}``', f'     - {users}']
    return '\n'.join(lines) + '\n'


def _keyword_source(app, docname, source):
    if docname == 'hyperparameters':
        source[0] = source[0].replace('.. downhill-keyword-table::\n', _keyword_table())


# Sphinx citations are global: a reference listed in two docstrings (Adam's
# paper in every member of the Adam family) would be a duplicate. The first
# docstring to define a label keeps the citation; later ones show theirs as
# plain text, and their [LABEL]_ references link to the first.
_CITED = {}


def _documented_name(name, cls):
    """The name autoclass gives the class on its page (hand-written or generated)."""
    if os.path.exists(os.path.join(ALGO_DIR, f'{name}.rst')):
        return f'downhill.{cls.__name__}'
    return f'{cls.__module__}.{cls.__qualname__}'


# Decide the owner of every label from the code, not from the order in which
# pages happen to be read: hand-written pages first, in registry order.
for _name, _cls in sorted(downhill.algorithms().items(),
                          key=lambda item: item[0] in _extra_algorithms()):
    for _label in re.findall(r'^\s*\.\. \[(\w+)\]', inspect.getdoc(_cls) or '', re.M):
        _CITED.setdefault(_label, _documented_name(_name, _cls))
_CITATION = re.compile(r'^(\s*)\.\. \[(\w+)\](.*)$')


def _unique_citations(app, what, name, obj, options, lines):
    for i, line in enumerate(lines):
        match = _CITATION.match(line)
        if not match:
            continue
        indent, label, rest = match.groups()
        owner = _CITED.setdefault(label, name)
        if owner != name:
            lines[i] = f'{indent}| [{label}]{rest}'


def _always_reread(app, env, added, changed, removed):
    # These pages are partly generated from the code: read them on every build.
    return ['index', 'algorithms/index', 'hyperparameters']


def setup(app):
    app.add_directive('downhill-race', RaceDirective)
    app.connect('builder-inited', _open_gallery)
    app.connect('build-finished', _copy_mathjax)
    app.connect('source-read', _edit_sources)
    app.connect('source-read', _keyword_source)
    app.connect('autodoc-process-docstring', _unique_citations, priority=600)
    app.connect('env-get-outdated', _always_reread)
