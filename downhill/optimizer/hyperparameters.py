"""Hyperparameters: checked, held in shared scalars (changing one never recompiles), scheduled; and their schema.
"""

import inspect
import logging

import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.compile.sharedvalue import SharedVariable

from ..core import hyperparams, schedules, transforms

log = logging.getLogger('downhill')

#: Keywords of the training loop; accepted (and ignored) by get_updates too.
LOOP_KEYWORDS = ('patience', 'validate_every', 'min_improvement', 'max_updates', 'batch_size',
                 'checkpoint', 'checkpoint_every')
#: Old names of ``max_gradient_elem``.
CLIP_SYNONYMS = ('max_gradient_clip', 'gradient_clip')


def _prepare_parameters(klass):
    """(name, default) of the keywords of ``klass._prepare`` as defined in ``klass`` itself."""
    prepare = klass.__dict__.get('_prepare')
    if prepare is None:
        return []
    return [(p.name, p.default) for p in inspect.signature(prepare).parameters.values()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != 'self']


def hyperparameters(cls, common=True):
    """The hyperparameters of an algorithm class with their defaults: the schema, read from the code.

    Each class along the MRO reads its own keywords in its ``_prepare`` and
    passes the rest on, so the keywords of every ``_prepare`` defined along
    it are the algorithm's, most derived first (a subclass's default wins).
    The iterate() keywords, the CLI's ``--set`` and ``downhill algorithms``,
    :func:`downhill.tools.sweep` and the docs' tables all read this.

    Parameters
    ----------
    cls : Optimizer subclass
    common : bool
        Include those every algorithm has (``learning_rate``, ``momentum``,
        ...). Default True.

    Returns
    -------
    dict
        Keyword name to default value, the algorithm's own first.
    """
    own, shared = {}, {}
    for klass in cls.__mro__:
        for name, default in _prepare_parameters(klass):
            if name not in own and name not in shared:
                (shared if klass is Hyperparameters else own)[name] = default
    return {**own, **shared} if common else own


def common_hyperparameters():
    """The hyperparameters every algorithm has (``learning_rate``, ``momentum``...), with defaults."""
    return dict(_prepare_parameters(Hyperparameters))


def loop_keywords(cls):
    """The keywords of the training loop (``patience``, ...) with their defaults.

    Read from the first ``iterate`` along ``cls``'s MRO from the base up:
    the loop's own (an algorithm may override ``iterate`` with other defaults
    and pass the rest on).
    """
    iterate = next(k.__dict__['iterate'] for k in reversed(cls.__mro__) if 'iterate' in k.__dict__)
    return {p.name: p.default for p in inspect.signature(iterate).parameters.values()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            and p.name not in ('self', 'train', 'valid')}


def valid_keywords(cls):
    """Every keyword that ``iterate()`` accepts for an algorithm class."""
    return set(hyperparameters(cls)) | set(loop_keywords(cls)) | set(CLIP_SYNONYMS)


class Hyperparameters:
    """The hyperparameters of :class:`~downhill.optimizer.base.Optimizer`."""

    def _valid_keywords(self):
        return valid_keywords(type(self))

    def _set_hyper(self, name, value, attr=True):
        """Hold a numeric hyperparameter in a float64 shared scalar named ``name``.

        The compiled step reads the shared value, so changing it never
        recompiles; each parameter sees it cast to its own dtype. With
        ``attr`` (the default) it is also the attribute ``name``.
        """
        var = self._hypers.get(name)
        if var is None:
            var = self._hypers[name] = pytensor.shared(np.float64(value), name=name)
        else:
            var.set_value(np.float64(value))
        if attr:
            setattr(self, name, var)
        return var

    def _hyper(self, name, param):
        """The hyperparameter ``name`` (a number or a schedule's value) as a scalar of ``param``'s dtype."""
        value = self._hyper_exprs.get(name)
        if value is None:
            value = self._hypers[name]
        return transforms.as_dtype(value, param.dtype)

    def _set_schedulable(self, name, value, label):
        """A hyperparameter given as a number or a :class:`~downhill.core.schedules.Schedule`.

        A number is held by :meth:`_set_hyper`. A schedule's numbers are held
        in shared scalars ``name.NUMBER`` and its value is an expression of
        :attr:`update_count`. Returns the shared variable or the expression.
        """
        if isinstance(value, schedules.Schedule):
            shared = {k: self._set_hyper(f'{name}.{k}', v, attr=False)
                      for k, v in value.numbers().items()}
            value._bind(self, label, shared)
            expr = pt.cast(value.symbolic(pt.cast(self.update_count, 'float64'), shared), 'float64')
            self._hyper_exprs[name] = expr
            self._schedules[name] = value
            self._validation_hooks.extend(value.observers())
            return expr
        self._hyper_exprs.pop(name, None)
        self._schedules.pop(name, None)
        return self._set_hyper(name, hyperparams.number(label, value, low=0, finite=True), attr=False)

    def _current(self, name):
        """The value of hyperparameter ``name`` that the next update will use, as a float."""
        expr = self._hyper_exprs.get(name)
        if expr is None:
            return float(self._hypers[name].get_value())
        return float(pytensor.function([], expr, mode='FAST_COMPILE')())

    def _uses_momentum(self):
        return '_momentum' in self._schedules or self.momentum != 0

    def _prepare(self, learning_rate=1e-4, momentum=0, nesterov=False,
                 max_gradient_norm=0, max_gradient_elem=0, weight_decay=0, **unknown):
        """Set the hyperparameters common to every algorithm.

        Subclasses read their own keywords in their own ``_prepare`` and pass
        the rest on; whatever reaches this method unread is an error.
        ``learning_rate`` and ``momentum`` may be schedules
        (:mod:`downhill.core.schedules`); then the attribute is an expression
        (``opt.learning_rate.eval()`` is the value the next update uses).
        """
        for old in CLIP_SYNONYMS:
            if old in unknown:
                # checked under the name the caller wrote, then used as max_gradient_elem
                value = hyperparams.number(old, unknown.pop(old), low=0)
                if not max_gradient_elem:
                    max_gradient_elem = value
        hyperparams.reject_unknown(f'{type(self).__name__}', unknown, self._valid_keywords())
        self._validation_hooks = []
        self.learning_rate = self._set_schedulable('learning_rate', learning_rate, 'learning_rate')
        if isinstance(momentum, schedules.Schedule):
            self.momentum = self._set_schedulable('_momentum', momentum, 'momentum')
        else:
            self.momentum = hyperparams.number('momentum', momentum, low=0, finite=True)
            hyperparams.warn_if(self.momentum >= 1, 'momentum=%s >= 1 makes the velocity grow '
                                'without bound', self.momentum)
            self._set_schedulable('_momentum', self.momentum, 'momentum')
        self.nesterov = hyperparams.flag('nesterov', nesterov)
        self.max_gradient_norm = hyperparams.number('max_gradient_norm', max_gradient_norm, low=0)
        self.max_gradient_elem = hyperparams.number('max_gradient_elem', max_gradient_elem, low=0)
        self._set_hyper('_max_gradient_norm', self.max_gradient_norm)
        self._set_hyper('_max_gradient_elem', self.max_gradient_elem)
        self.weight_decay = hyperparams.number('weight_decay', weight_decay, low=0, finite=True)
        self._set_hyper('_weight_decay', self.weight_decay)

    def _graph_key(self):
        """What the shape of the update graph depends on (see ``_graph_attrs``)."""
        if self._graph_attrs is None:
            return object()  # never equal to another: always compile anew
        return (self._uses_momentum(), self.nesterov, self.max_gradient_elem > 0,
                self.max_gradient_norm > 0, self.weight_decay > 0,
                tuple(sorted((k, s.structure()) for k, s in self._schedules.items())),
                tuple(getattr(self, a) for a in self._graph_attrs))

    def _settings(self):
        """The optimizer's settings, to put back if a call fails before the loop starts."""
        attrs = {k: (v.copy() if isinstance(v, (dict, list)) else v) for k, v in vars(self).items()
                 if k not in self._KEEP_ON_ERROR}
        return attrs, {name: var.get_value() for name, var in self._hypers.items()}

    def _restore_settings(self, settings):
        attrs, values = settings
        for name in [k for k in vars(self) if k not in self._KEEP_ON_ERROR and k not in attrs]:
            delattr(self, name)
        vars(self).update(attrs)
        for name, value in values.items():
            self._hypers[name].set_value(value)

    def _log_hyperparameters(self, given):
        if not log.isEnabledFor(logging.INFO):
            return
        names = ['learning_rate', 'momentum', 'nesterov', 'patience', 'validate_every',
                 'min_improvement', 'max_gradient_norm', 'max_gradient_elem']
        names += [k for k in given if k not in names and k not in CLIP_SYNONYMS]
        shown = []
        for name in names:
            value = given.get(name, getattr(self, name, None))
            if isinstance(value, SharedVariable):
                value = value.get_value()
            if value is not None:
                shown.append(f'{name}={value:g}' if isinstance(value, (float, np.floating)) else f'{name}={value}')
        log.info('%s: %s', type(self).__name__, ' '.join(shown))
