"""What happens when the loss or a gradient stops being a finite number.

Two policies, chosen with ``on_nonfinite=`` in :meth:`~downhill.Optimizer.iterate`:

``'stop'`` (the default)
    The loop checks every training and validation monitor after each pass
    (a handful of Python float checks, no extra work in the compiled step).
    At the first one that is NaN or infinite it stops, logs the iteration and
    the monitor, and restores the best parameters. A NaN gradient with a
    finite loss turns the parameters into NaN, which the next pass's loss
    shows.
``'skip'``
    The compiled step guards its own updates: with

    .. math::

        \\mathrm{ok} = \\mathrm{isfinite}(\\mathcal{L}) \\wedge
        \\bigwedge_i \\mathrm{isfinite}(g_i) \\wedge
        \\bigwedge_i \\mathrm{isfinite}(p_i')

    (the loss, every gradient and every new parameter value), every update
    :math:`v \\leftarrow v'` becomes :math:`v \\leftarrow
    \\mathrm{switch}(\\mathrm{ok}, v', v)`, the optimizer's state and the
    update counter included, so a batch with a NaN changes nothing (random
    generators, which cannot be switched, still advance). A counter of the
    skipped updates is kept and logged.
"""

import logging
import math

import pytensor
import pytensor.tensor as pt
from pytensor.tensor.type import TensorType

log = logging.getLogger('downhill')

#: The accepted values of ``on_nonfinite``.
POLICIES = ('stop', 'skip')
#: The key of the skipped-updates counter among an optimizer's state entries.
SKIPPED = (None, 'skipped_updates')


def all_finite(exprs):
    """A boolean scalar: every element of every expression in ``exprs`` is finite."""
    ok = None
    for expr in exprs:
        # (not pt.isfinite: PyTensor 2.38 lacks it)
        finite = pt.all(pt.invert(pt.or_(pt.isnan(expr), pt.isinf(expr))))
        ok = finite if ok is None else pt.and_(ok, finite)
    return pt.as_tensor_variable(True) if ok is None else ok


def guard(pairs, loss, grads, params, counter):
    """``pairs`` with every tensor update applied only when the step is finite.

    Parameters
    ----------
    pairs : list of (shared variable, expression)
        The updates of one step.
    loss : scalar expression
    grads : list of expressions
        The raw gradients.
    params : list of shared variables
        The parameters (their new values are checked too).
    counter : shared int64 scalar
        Counts the skipped updates; its increment is added to the pairs.

    Returns
    -------
    list of (shared variable, expression)
    """
    params = set(params)
    new_values = [expr for var, expr in pairs if var in params]
    ok = all_finite([loss] + list(grads) + new_values)
    out = []
    for var, expr in pairs:
        if isinstance(var.type, TensorType):
            expr = var.type.filter_variable(pt.switch(ok, expr, var), allow_convert=True)
        out.append((var, expr))
    out.append((counter, counter + pt.cast(pt.invert(ok), counter.dtype)))
    return out


def make_counter():
    """A fresh shared counter of skipped updates."""
    import numpy as np
    return pytensor.shared(np.int64(0), name='skipped_updates')


#: How the loop's stop message starts when a value went non-finite.
PREFIX = 'non-finite'


def reason(kind, name, value, iteration):
    """The loop's stop message for a non-finite ``kind`` ('training'/'validation') monitor."""
    return f'{PREFIX} {kind} monitor {name!r} ({value}) at iteration {iteration}'


class SkipLog:
    """Logs skipped updates: a warning for the first few iterations with any, then quietly.

    The loop's final line gives the total.
    """

    LOUD = 3

    def __init__(self, label, count):
        self.label, self.count, self.loud = label, count, self.LOUD

    def __call__(self, iteration, count):
        if count == self.count:
            return
        level = logging.WARNING if self.loud > 0 else logging.DEBUG
        self.loud -= 1
        log.log(level, '%s %d: skipped %d update(s) with a non-finite loss, gradient or new '
                'parameter value (%d so far)%s', self.label, iteration, count - self.count, count,
                '; further skips are logged at DEBUG' if self.loud == 0 else '')
        self.count = count


def first_nonfinite(monitors):
    """The name of the first monitor whose value is NaN or infinite, or None."""
    for name, value in monitors.items():
        if not math.isfinite(value):
            return name
    return None
