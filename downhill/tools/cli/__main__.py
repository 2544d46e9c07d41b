"""``python -m downhill.tools.cli``: the ``downhill`` command."""

from . import main

main()
