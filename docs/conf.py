"""Sphinx configuration for the downhill documentation.

Build with ``python -m sphinx -W --keep-going -b html docs docs/_build/html``
(or ``python docs/build.py``). Needs the ``docs`` extra:
``pip install -e .[docs]``.
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

# docs/pymc.rst is written separately. It is in the table of contents when the
# file exists; until then the entry is left out, so the build stays clean.
PYMC_PAGE = os.path.join(HERE, 'pymc.rst')


def _optional_pages(app, docname, source):
    if docname == 'index' and not os.path.exists(PYMC_PAGE):
        source[0] = '\n'.join(line for line in source[0].split('\n') if line.strip() != 'pymc')


def setup(app):
    app.connect('source-read', _optional_pages)
