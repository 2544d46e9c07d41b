r"""Hyperparameters that change as training goes on.

``learning_rate`` and ``momentum`` accept a number or a schedule::

    opt.iterate(train, learning_rate=0.1 * downhill.schedules.cosine(period=5000, warmup=200))

A schedule is a function of :math:`t`, the number of updates the optimizer
has made before the current one (``opt.update_count``, a shared integer that
every training step increments, in :meth:`~downhill.Optimizer.iterate` and in
functions compiled from :meth:`~downhill.Optimizer.get_updates` alike). It is
evaluated symbolically inside the compiled step, so it costs no Python call
per update, and ``opt.learning_rate.eval()`` gives the value the next update
will use.

Every schedule's numbers (``period``, ``halflife``, its ``scale``, ...) are
copied into shared variables held by the optimizer, so calling
:meth:`~downhill.Optimizer.iterate` again with the same kind of schedule but
other numbers reuses the compiled step. The update counter is algorithm
state: it carries over between calls of ``iterate()`` and ``reset=True``
sets it back to zero.

Schedules multiply: a number times a schedule scales it, and the product of
two schedules is a schedule (``0.01 * linear_warmup(100) *
exponential(halflife=1000)``). Every factory below returns a schedule whose
largest value is 1 (``constant(value)`` and ``one_cycle``'s ``start``/``end``
aside), so the number in front is the peak learning rate.

:func:`reduce_on_plateau` is the one schedule driven from the host: it lowers
its value when validation stops improving, by setting a shared variable (no
recompile).
"""

import logging
import math
import numbers

import numpy as np
import pytensor.tensor as pt

from . import hyperparams

log = logging.getLogger('downhill')

__all__ = ['Schedule', 'constant', 'step', 'exponential', 'cosine', 'linear_warmup', 'one_cycle',
           'reduce_on_plateau']


class _Symbolic:
    """The operations a schedule's formula needs, on PyTensor scalars."""
    floor, exp, cos, minimum, maximum, where, mod = (
        pt.floor, pt.exp, pt.cos, pt.minimum, pt.maximum, pt.switch, pt.mod)


class _NumPy:
    """The same operations in NumPy (for :meth:`Schedule.at`)."""
    floor, exp, cos, minimum, maximum, where, mod = (
        np.floor, np.exp, np.cos, np.minimum, np.maximum, np.where, np.mod)


class Schedule:
    """A value that depends on the number of updates made so far.

    A subclass lists its numbers in ``__init__`` (see ``_numbers``), and
    writes its formula once in :meth:`_formula`, with the operations of the
    ``xp`` argument (``xp.exp``, ``xp.where``, ...), so that the same code
    builds the symbolic value and the NumPy value of :meth:`at`. Structural
    choices (those that change the graph, like ``cosine``'s ``restart``) go
    in ``_structure``; numbers never do.
    """

    _structure = ()
    _structure_names = ()
    _label = 'schedule'

    def __init__(self, **values):
        self._numbers = dict(values)

    # ------------------------------------------------------------ interface

    def numbers(self):
        """Every number of the schedule by name (nested schedules' names are prefixed)."""
        return dict(self._numbers)

    def structure(self):
        """What the shape of the schedule's graph depends on (a hashable value)."""
        return (type(self).__name__,) + tuple(self._structure)

    def symbolic(self, t, values):
        """The value at update count ``t`` (a float64 scalar), reading ``values[name]``."""
        return self._formula(t, values.__getitem__, _Symbolic)

    def at(self, t):
        """The value after ``t`` updates, computed in NumPy from the schedule's own numbers."""
        with np.errstate(divide='ignore', invalid='ignore'):
            return float(self._formula(np.float64(t), self._numbers.__getitem__, _NumPy))

    def observers(self):
        """The host-side parts (see :func:`reduce_on_plateau`) of this schedule."""
        return []

    def _bind(self, optimizer, name, variables):
        """Called when an optimizer takes this schedule for hyperparameter ``name``."""

    def _formula(self, t, n, xp):
        raise NotImplementedError

    # -------------------------------------------------------------- algebra

    def __mul__(self, other):
        if isinstance(other, Schedule):
            return _Product([self, other])
        if isinstance(other, numbers.Real) and not isinstance(other, bool):
            return _Product([self, constant(other)])
        return NotImplemented

    def __rmul__(self, other):
        if isinstance(other, numbers.Real) and not isinstance(other, bool):
            return _Product([constant(other), self])
        return NotImplemented

    def __repr__(self):
        args = ', '.join(f'{k}={v:g}' for k, v in self._numbers.items())
        extra = ', '.join(f'{k}={v!r}' for k, v in zip(self._structure_names, self._structure))
        return f'{self._label}({", ".join(a for a in (args, extra) if a)})'


class _Product(Schedule):
    def __init__(self, factors):
        super().__init__()
        self.factors = []
        for f in factors:
            self.factors.extend(f.factors if isinstance(f, _Product) else [f])

    def numbers(self):
        return {f'{i}.{k}': v for i, f in enumerate(self.factors) for k, v in f.numbers().items()}

    def structure(self):
        return ('product',) + tuple(f.structure() for f in self.factors)

    def symbolic(self, t, values):
        out = None
        for i, f in enumerate(self.factors):
            part = f.symbolic(t, _Prefixed(values, f'{i}.'))
            out = part if out is None else out * part
        return out

    def at(self, t):
        return float(np.prod([f.at(t) for f in self.factors]))

    def observers(self):
        return [o for f in self.factors for o in f.observers()]

    def _bind(self, optimizer, name, variables):
        for i, f in enumerate(self.factors):
            f._bind(optimizer, name, _Prefixed(variables, f'{i}.'))

    def __repr__(self):
        return ' * '.join(repr(f) for f in self.factors)


class _Prefixed:
    def __init__(self, mapping, prefix):
        self.mapping, self.prefix = mapping, prefix

    def __getitem__(self, key):
        return self.mapping[self.prefix + key]


def _positive(name, value):
    return hyperparams.number(name, value, low=0, low_open=True)


def _fraction(name, value):
    value = hyperparams.number(name, value, low=0)
    if value > 1:
        raise ValueError(f'{name} must be between 0 and 1, got {value!r}')
    return value


# ------------------------------------------------------------------ factories


class _Constant(Schedule):
    _label = 'constant'

    def _formula(self, t, n, xp):
        return n('value')


def constant(value=1.0):
    """The same value at every update: :math:`v`.

    Useful to scale other schedules (``constant(0.1) * cosine(1000)`` is
    ``0.1 * cosine(1000)``) and as :func:`reduce_on_plateau`'s partner.
    """
    return _Constant(value=hyperparams.number('value', value))


class _Step(Schedule):
    _label = 'step'

    def _formula(self, t, n, xp):
        return n('factor') ** xp.floor(t / n('every'))


def step(every, factor=0.5):
    r"""Multiply by ``factor`` every ``every`` updates: :math:`f^{\lfloor t / e \rfloor}`.

    Parameters
    ----------
    every : int
        Updates between changes (> 0).
    factor : float
        The multiplier (>= 0). Default 0.5.
    """
    return _Step(every=_positive('every', every), factor=hyperparams.number('factor', factor, low=0))


class _Exponential(Schedule):
    _label = 'exponential'

    def _formula(self, t, n, xp):
        return xp.exp(-math.log(2) * t / n('halflife'))


def exponential(halflife):
    r"""Exponential decay with a half-life: :math:`2^{-t / h}`.

    Parameters
    ----------
    halflife : float
        Updates after which the value has halved (> 0).
    """
    return _Exponential(halflife=_positive('halflife', halflife))


class _LinearWarmup(Schedule):
    _label = 'linear_warmup'

    def _formula(self, t, n, xp):
        return xp.minimum(1.0, (t + 1) / n('steps'))


def linear_warmup(steps):
    r"""Rise linearly to 1 over the first ``steps`` updates: :math:`\min(1, (t + 1) / w)`.

    The first update uses :math:`1 / w`, update number :math:`w` (and every
    later one) uses 1. Multiply by another schedule to decay after the
    warm-up: ``linear_warmup(100) * exponential(1000)``.
    """
    return _LinearWarmup(steps=_positive('steps', steps))


class _Cosine(Schedule):
    _label = 'cosine'
    _structure_names = ('restart',)

    def __init__(self, restart, **values):
        super().__init__(**values)
        self._structure = (bool(restart),)

    def _formula(self, t, n, xp):
        warmup, period, final = n('warmup'), n('period'), n('final')
        since = xp.maximum(t - warmup, 0.0)
        if self._structure[0]:
            progress = xp.mod(since, period) / period
        else:
            progress = xp.minimum(since, period) / period
        decay = final + (1 - final) * 0.5 * (1 + xp.cos(math.pi * progress))
        return xp.where(t < warmup, (t + 1) / xp.maximum(warmup, 1.0), decay)


def cosine(period, warmup=0, final=0.0, restart=False):
    r"""Cosine annealing, after an optional linear warm-up.

    .. math::
        f(t) = \begin{cases}
          (t + 1) / w & t < w \\
          f_{end} + (1 - f_{end}) \tfrac12 \left(1 + \cos \pi \min(1, \tfrac{t - w}{P})\right)
            & t \ge w
        \end{cases}

    It falls from 1 to ``final`` over ``period`` updates after the warm-up
    and then stays there, or with ``restart=True`` jumps back to 1 every
    ``period`` updates (the warm restarts of [Losh17]_).

    Parameters
    ----------
    period : float
        Updates of one cosine half-wave :math:`P` (> 0).
    warmup : float
        Updates of linear warm-up :math:`w`. Default 0.
    final : float
        The value :math:`f_{end}` at the end of the period. Default 0.
    restart : bool
        Start again after each period. Default False.

    References
    ----------
    .. [Losh17] I. Loshchilov & F. Hutter (2017) "SGDR: stochastic gradient
       descent with warm restarts." ICLR. arXiv:1608.03983.
    """
    return _Cosine(hyperparams.flag('restart', restart), period=_positive('period', period),
                   warmup=hyperparams.number('warmup', warmup, low=0),
                   final=hyperparams.number('final', final, low=0))


class _OneCycle(Schedule):
    _label = 'one_cycle'

    def _formula(self, t, n, xp):
        total, start, end = n('total'), n('start'), n('end')
        up = xp.maximum(n('warmup') * total, 1.0)
        rise = xp.minimum(t / up, 1.0)
        fall = xp.minimum(xp.maximum(t - up, 0.0) / xp.maximum(total - up, 1.0), 1.0)
        rising = start + (1 - start) * 0.5 * (1 - xp.cos(math.pi * rise))
        falling = 1 + (end - 1) * 0.5 * (1 - xp.cos(math.pi * fall))
        return xp.where(t < up, rising, falling)


def one_cycle(total, warmup=0.3, start=0.04, end=4e-6):
    r"""The "1cycle" policy of [Smit19]_: up to 1 and down to almost 0, along cosines.

    Over the first ``warmup * total`` updates (:math:`u`) the value rises
    from ``start`` to 1, then falls to ``end`` at update ``total`` and stays
    there:

    .. math::
        f(t) = \begin{cases}
          s + (1 - s) \tfrac12 (1 - \cos \pi t / u) & t < u \\
          1 + (e - 1) \tfrac12 \left(1 - \cos \pi \min(1, \tfrac{t - u}{T - u})\right) & t \ge u
        \end{cases}

    The defaults are those of torch's ``OneCycleLR`` (``div_factor=25``,
    ``final_div_factor=1e4``). For momentum, which the policy cycles the
    other way, use ``start`` and ``end`` above 1:
    ``momentum=0.85 * one_cycle(T, start=0.95 / 0.85, end=0.95 / 0.85)``
    goes 0.95, 0.85, 0.95.

    Parameters
    ----------
    total : float
        Length of the cycle in updates :math:`T` (> 0).
    warmup : float
        Fraction of the cycle spent rising (0 to 1). Default 0.3.
    start, end : float
        First and last values, relative to the peak. Defaults 0.04 and 4e-6.

    References
    ----------
    .. [Smit19] L. Smith & N. Topin (2019) "Super-convergence: very fast
       training of neural networks using large learning rates." Proc. SPIE
       11006. arXiv:1708.07120.
    """
    return _OneCycle(total=_positive('total', total), warmup=_fraction('warmup', warmup),
                     start=hyperparams.number('start', start, low=0),
                     end=hyperparams.number('end', end, low=0))


# ----------------------------------------------------------------- host side


class _Plateau(Schedule):
    def __init__(self, factor, patience, min_improvement, min_value, monitor, cooldown):
        super().__init__(value=1.0)
        self.factor, self.patience, self.cooldown = factor, patience, cooldown
        self.min_improvement, self.min_value, self.monitor = min_improvement, min_value, monitor
        self.best, self.failures, self.reductions = None, 0, 0
        self._wait = 0
        self._last = None
        self._variable = None
        self._name = None

    def _formula(self, t, n, xp):
        return n('value')

    def observers(self):
        return [self]

    def _bind(self, optimizer, name, variables):
        self._variable = variables['value']
        self._name = name

    @property
    def value(self):
        """The current factor (1 until the first reduction)."""
        return self._numbers['value']

    def observe(self, valid_monitors):
        """Count one validation result; lower the value if it is one too many without improvement.

        ``valid_monitors`` is the dict of validation monitors that
        :meth:`~downhill.Optimizer.iterate` yields. The loop yields the same
        dict after every iteration until the next validation, so a dict seen
        last time (the same object) is ignored: call this after every
        iteration. Returns True when the value was lowered.
        """
        if valid_monitors is None or valid_monitors is self._last:
            return False
        self._last = valid_monitors
        try:
            value = float(valid_monitors[self.monitor])
        except KeyError:
            raise KeyError(f'reduce_on_plateau watches the monitor {self.monitor!r}, which is not '
                           f'among {", ".join(map(repr, valid_monitors))}') from None
        cooling = self._wait > 0
        if cooling:
            self._wait -= 1
        improved = self.best is None or (
            self.best - value > abs(self.best) * self.min_improvement and not math.isnan(value))
        if improved:
            self.best, self.failures = value, 0
            return False
        self.failures += 1
        if self.failures <= self.patience or cooling:
            return False
        old = self._numbers['value']
        new = max(old * self.factor, self.min_value)
        self.failures = 0
        self._wait = self.cooldown
        if new == old:
            return False
        self._numbers['value'] = new
        self.reductions += 1
        if self._variable is not None:
            self._variable.set_value(np.float64(new))
        log.info('reduce_on_plateau: %s factor %g -> %g after %d validations without improvement',
                 self._name or 'value', old, new, self.patience + 1)
        return True

    __call__ = observe

    def __repr__(self):
        return (f'reduce_on_plateau(factor={self.factor:g}, patience={self.patience}, '
                f'value={self.value:g})')


def reduce_on_plateau(factor=0.5, patience=2, min_improvement=0.0, min_value=0.0, monitor='loss',
                      cooldown=0):
    """A factor that falls when validation stops improving, set from the host.

    Use it like any schedule, times the starting learning rate::

        plateau = downhill.schedules.reduce_on_plateau(factor=0.5, patience=2)
        opt.minimize(data, learning_rate=0.1 * plateau, patience=10)

    :meth:`~downhill.Optimizer.iterate` hands it each validation result
    (calling :meth:`observe` yourself as well counts nothing twice). With
    the pairs of :meth:`~downhill.Optimizer.get_updates` in your own
    compiled function, call ``plateau.observe({'loss': value})`` after each
    validation of yours.

    The factor starts at 1. When more than ``patience`` validations in a row
    failed to improve ``valid[monitor]`` (an improvement is
    ``best - value > |best| * min_improvement``, as for early stopping), it
    is multiplied by ``factor`` (but not below ``min_value``), then at least
    ``cooldown`` validations pass before the next reduction. The factor
    lives in a shared variable of the optimizer, so a change takes effect at
    the next update without recompiling; ``opt.learning_rate.eval()`` shows
    it. The object remembers its factor: passing it again to a later
    ``iterate()`` continues from the reduced value.

    Keep ``patience`` here below the loop's own ``patience`` (default 5),
    or early stopping ends training before a reduction can help. With
    proximal regularizers, ``'loss'`` is the composite objective (see
    :mod:`downhill.core.prox`).

    Parameters
    ----------
    factor : float
        Multiplier at each reduction, between 0 and 1. Default 0.5.
    patience : int
        Validations without improvement tolerated. Default 2.
    min_improvement : float
        Relative improvement that counts. Default 0.
    min_value : float
        The factor never goes below this. Default 0.
    monitor : str
        The validation monitor watched. Default ``'loss'``.
    cooldown : int
        Validations after a reduction during which no other happens. Default 0.
    """
    factor = _fraction('factor', factor)
    patience = hyperparams.number('patience', patience, low=0, integer=True)
    cooldown = hyperparams.number('cooldown', cooldown, low=0, integer=True)
    min_improvement = hyperparams.number('min_improvement', min_improvement, low=0)
    min_value = hyperparams.number('min_value', min_value, low=0)
    if not isinstance(monitor, str):
        raise TypeError(f'monitor must be the name of a monitor, got {monitor!r}')
    return _Plateau(factor, patience, min_improvement, min_value, monitor, cooldown)
