"""Build the documentation, failing on any warning.

    python docs/build.py [OUTPUT_DIR]     # default: docs/_build/html

The same as ``python -m sphinx -W --keep-going -b html docs docs/_build/html``.
Needs the ``docs`` extra (``pip install -e .[docs]``).

A build from scratch runs the races that the gallery, the front page and the
algorithm pages show (docs/make_gallery.py): about two and a half minutes on
two cores, against ten seconds for the rest. They are kept beside the
doctrees (OUTPUT_DIR/.doctrees/downhill-race), so a later build into the same
OUTPUT_DIR runs them again only when the library's code has changed.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv):
    try:
        from sphinx.cmd.build import build_main
    except ImportError:
        sys.exit('building the docs needs Sphinx and sphinx-click: pip install -e .[docs]')
    out = argv[0] if argv else os.path.join(HERE, '_build', 'html')
    return build_main(['-W', '--keep-going', '-b', 'html', HERE, out])


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
