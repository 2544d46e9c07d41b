"""The ``downhill`` command group, which every command module adds its command to."""

import click

from ..._version import __version__


@click.group(context_settings={'help_option_names': ['-h', '--help'], 'max_content_width': 100})
@click.version_option(__version__, '--version', prog_name='downhill', message='%(prog)s %(version)s')
def main():
    """Minimize PyTensor losses: list the algorithms, race them on test landscapes, fit a model.

    Run `downhill COMMAND --help` for the options of each command.
    """
