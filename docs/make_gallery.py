"""Regenerate the gallery: race pictures made by the ``downhill`` command.

Run from the repository root (needs matplotlib)::

    python docs/make_gallery.py            # everything
    python docs/make_gallery.py rosenbrock  # some landscapes only

For every landscape it runs ``downhill race LANDSCAPE --plot ...`` and, for
the algorithm pages, ``downhill race rosenbrock --algo ALGO --plot ...``,
writing PNGs to ``docs/_static/gallery/`` and the page ``docs/gallery.rst``
(with each command and the table it printed). The PNGs and the page are
committed, so building the docs does not run any race. The races are
deterministic (ESGD draws from a fixed seed), so rerunning gives the same
tables (the timings aside).
"""

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT = os.path.join(HERE, '_static', 'gallery')
PAGE = os.path.join(HERE, 'gallery.rst')

sys.path.insert(0, ROOT)

from downhill import algorithms, landscapes  # noqa: E402

#: What each picture shows, in a sentence.
NOTES = {
    'rosenbrock': 'A long, curved, flat-bottomed valley: finding it is easy, following it '
                  'to the minimum at (1, 1) is the hard part.',
    'ackley': 'A funnel covered in regular bumps. From far out on the plateau the bumps '
              'trap small steps: most algorithms stop in the first one. ADAGRAD, RMSProp '
              'and NAG race here with large learning rates, which carry them over the '
              'bumps towards the centre.',
    'rastrigin': 'A bowl with a grid of local minima: most methods stop in the nearest one.',
    'beale': 'Flat valleys and sharp ridges towards the corners; the minimum is at (3, 0.5).',
    'himmelblau': 'Four global minima, all with value 0; which one an algorithm reaches '
                  'depends on its first steps.',
    'styblinski_tang': 'Separable, with four local minima in two dimensions; the start at '
                       'the origin slopes towards the global one at (-2.90, -2.90).',
    'quadratic': 'A convex bowl whose curvatures differ by a factor of 100: the test of '
                 'ill-conditioning, where per-element scaling shines.',
    'gaussian_wells': 'A sum of eight random Gaussian wells (seed 0): the nearest well is '
                      'not the deepest.',
}


def race(args, picture):
    command = ['downhill', 'race', *args, '--plot', f'{picture}']
    env = dict(os.environ, COLUMNS='100')
    result = subprocess.run([sys.executable, '-m', 'downhill.cli', *command[1:-1],
                             os.path.join(OUT, picture)],
                            cwd=ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f'{" ".join(command)} failed:\n{result.stdout}\n{result.stderr}')
    table = '\n'.join(line for line in result.stdout.splitlines() if not line.startswith('wrote '))
    print(' '.join(command))
    print(table)
    return ' '.join(command), table


def main(only):
    os.makedirs(OUT, exist_ok=True)
    names = [n for n in landscapes.LANDSCAPES if not only or n in only]
    sections = []
    for name in names:
        command, table = race([name], f'{name}.png')
        sections.append((name, command, table))
    if not only:
        for algo in algorithms():
            race(['rosenbrock', '--algo', algo], f'algo-{algo}.png')
    if only:
        print('(gallery.rst not rewritten: run without arguments for that)')
        return
    lines = [
        'Gallery',
        '=======',
        '',
        'Every algorithm raced on every :doc:`test landscape <landscapes>`, from the',
        "landscape's start, with the race defaults of ``downhill race`` (see :doc:`cli`).",
        'Left: the paths over a log-scaled contour map of the landscape (the star is the',
        'global minimum, the white dot the start, the coloured dots where each run ended).',
        'Right: the distance to the minimum loss at each update, on a log scale.',
        '',
        'These pictures and tables are made by ``python docs/make_gallery.py``; the times',
        'are those of the machine that ran it.',
        '',
    ]
    for name, command, table in sections:
        title = name.replace('_', ' ').title() if name != 'styblinski_tang' else 'Styblinski-Tang'
        if name == 'gaussian_wells':
            title = 'Gaussian wells'
        lines += [title, '-' * len(title), '', NOTES.get(name, ''), '', '::', '',
                  f'   $ {command}']
        lines += ['   ' + line if line else '' for line in table.splitlines()]
        lines += ['', f'.. image:: _static/gallery/{name}.png',
                  f'   :alt: the algorithms racing on {name}', '   :width: 100%', '']
    with open(PAGE, 'w') as f:
        f.write('\n'.join(lines).rstrip() + '\n')
    print(f'wrote {PAGE}')


if __name__ == '__main__':
    main(sys.argv[1:])
