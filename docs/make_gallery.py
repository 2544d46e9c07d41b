"""The race pictures and tables of the docs, made by the ``downhill race`` command.

The docs build makes them: every ``.. downhill-race::`` directive in the pages
(the gallery, the front page, the algorithm pages; see ``conf.py``) runs its
command here, at build time, so the pictures and the numbers printed under
them are always those of the code being documented. Nothing of it is
committed. The results are kept in a folder of the build (beside Sphinx's
doctrees) and reused by the next build as long as the code that makes them is
unchanged: the folder is keyed by a hash of the ``downhill`` package's
sources, of this file and of the versions of Python, NumPy, PyTensor and
matplotlib, and emptied when the key changes. A build from scratch runs every
race (about two minutes on two cores); a rebuild with the same code runs none.

To look at the pictures outside the docs::

    python docs/make_gallery.py OUTPUT_DIR              # every landscape
    python docs/make_gallery.py OUTPUT_DIR rosenbrock   # some landscapes only

writes ``LANDSCAPE.png`` and ``LANDSCAPE.txt`` (the command and its table)
there. The races are deterministic (ESGD draws from a fixed seed), so every
build prints the same tables, the times (of the machine that built the docs)
aside.
"""

import hashlib
import json
import os
import platform
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import downhill  # noqa: E402

#: The file in a gallery folder that holds the key of its contents.
KEY_FILE = 'KEY'


def inputs_key(package=None):
    """A hash of everything the races' output depends on.

    ``package`` is the folder of the ``downhill`` sources (default: the one
    imported).
    """
    digest = hashlib.sha256()
    if package is None:
        package = os.path.dirname(os.path.abspath(downhill.__file__))
    files = [os.path.abspath(__file__)]
    for folder, dirs, names in os.walk(package):
        dirs[:] = sorted(d for d in dirs if d != '__pycache__')
        files += [os.path.join(folder, n) for n in sorted(names) if n.endswith('.py')]
    for path in files:
        digest.update(os.path.relpath(path, package).encode() + b'\0')
        with open(path, 'rb') as f:
            digest.update(f.read() + b'\0')
    versions = [platform.python_version()]
    for module in ('numpy', 'pytensor', 'matplotlib'):
        try:
            versions.append(f'{module} {__import__(module).__version__}')
        except ImportError:
            versions.append(f'{module} missing')
    digest.update(' '.join(versions).encode())
    return digest.hexdigest()


def command(landscape, algo=None):
    """The command line a picture is made by, as the docs print it."""
    if algo is None:
        return f'downhill race {landscape} --plot {landscape}.png'
    return f'downhill race {landscape} -a {algo} --plot {algo}.png'


class Gallery:
    """A folder of race pictures and tables, valid for one :func:`inputs_key`.

    Opening it on a folder made with another key empties the folder first.
    """

    def __init__(self, folder, key=None):
        self.folder = os.path.abspath(folder)
        self.key = inputs_key() if key is None else key
        self.key_file = os.path.join(self.folder, KEY_FILE)
        old = None
        if os.path.exists(self.key_file):
            with open(self.key_file) as f:
                old = f.read().strip()
        if old != self.key:
            shutil.rmtree(self.folder, ignore_errors=True)
            os.makedirs(self.folder)
            with open(self.key_file, 'w') as f:
                f.write(self.key + '\n')

    def race(self, landscape, algo=None):
        """Run ``downhill race`` (unless its result is kept) and return its result.

        A dict with ``command`` (as the docs print it), ``output`` (what the
        command printed, the line saying where the picture went aside) and
        ``picture`` (the path of the PNG).
        """
        name = landscape if algo is None else f'{landscape}-{algo}'
        picture = os.path.join(self.folder, f'{name}.png')
        record = os.path.join(self.folder, f'{name}.json')
        if not (os.path.exists(picture) and os.path.exists(record)):
            args = ['race', landscape, '--plot', picture]
            if algo is not None:
                args[2:2] = ['--algo', algo]
            output = _run(args)
            with open(record + '.tmp', 'w') as f:
                json.dump({'command': command(landscape, algo), 'output': output}, f, indent=1)
            os.replace(record + '.tmp', record)
        with open(record) as f:
            result = json.load(f)
        result['picture'] = picture
        return result


def _run(args):
    """Run the ``downhill`` command in this process and return what it printed."""
    from click.testing import CliRunner

    from downhill.tools import cli

    result = CliRunner().invoke(cli.main, args, catch_exceptions=False)
    if result.exit_code != 0:
        raise RuntimeError(f'downhill {" ".join(args)} failed ({result.exit_code}):\n'
                           f'{result.output}')
    lines = [line for line in result.stdout.splitlines() if not line.startswith('wrote ')]
    return '\n'.join(lines)


def main(argv):
    if not argv or argv[0].startswith('-'):
        sys.exit('usage: python docs/make_gallery.py OUTPUT_DIR [LANDSCAPE...]')
    from downhill.tools import landscapes
    folder, only = argv[0], argv[1:]
    gallery = Gallery(folder)
    for name in only or landscapes.LANDSCAPES:
        result = gallery.race(name)   # writes OUTPUT_DIR/NAME.png
        text = f'$ {result["command"]}\n{result["output"]}\n'
        print(text)
        with open(os.path.join(gallery.folder, f'{name}.txt'), 'w') as f:
            f.write(text)


if __name__ == '__main__':
    main(sys.argv[1:])
