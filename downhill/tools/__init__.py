"""Tools on top of everything: the command line, plots, test landscapes, PyMC,
sweeps, multistart and the ``minimize`` convenience function.
"""
