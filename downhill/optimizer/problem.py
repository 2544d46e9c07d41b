"""Checking the problem an optimizer is built for: loss, parameters, inputs, monitors, updates, constraints.
"""

import collections
import collections.abc
import logging

import numpy as np
import pytensor.tensor as pt
from pytensor.graph.basic import Constant, Variable
from pytensor.compile.sharedvalue import SharedVariable
from pytensor.tensor.sharedvar import TensorSharedVariable

from ..core import graph, hyperparams

log = logging.getLogger('downhill')


class ProblemChecks:
    """The checks of :class:`~downhill.optimizer.base.Optimizer`'s arguments, each naming the culprit."""


    @staticmethod
    def _check_updates(updates):
        pairs = list(updates.items()) if isinstance(updates, dict) else list(updates or ())
        for i, pair in enumerate(pairs):
            if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
                raise TypeError(f'updates[{i}] must be a (shared variable, expression) pair, got {pair!r}')
            if not isinstance(pair[0], SharedVariable):
                raise TypeError(f'updates[{i}]: {pair[0]!r} is not a shared variable')
        return [tuple(p) for p in pairs]

    @staticmethod
    def _check_params(loss, params, updated):
        if params is None:
            params = graph.find_params(loss, exclude=updated)
            if not params:
                raise ValueError(
                    'the loss depends on no float shared variables to optimize; create the '
                    'parameters with pytensor.shared(...) or pass params=[...]')
            return params
        if isinstance(params, Variable):
            params = [params]
        if not isinstance(params, collections.abc.Iterable) or isinstance(params, (str, bytes)):
            raise TypeError(f'params must be a shared variable or a list of them, got '
                            f'{hyperparams.shown(params)}')
        params = list(params)
        if not params:
            raise ValueError('params is empty: there is nothing to optimize')
        roots = set(graph._compat.graph_inputs([loss]))
        for i, p in enumerate(params):
            if not isinstance(p, TensorSharedVariable):
                raise TypeError(
                    f'params[{i}] ({graph.describe(p)}) is a {type(p).__name__}, not a shared '
                    'variable; parameters must be created with pytensor.shared(...)')
            if not str(p.dtype).startswith('float'):
                raise TypeError(f'params[{i}] ({graph.describe(p)}) has dtype {p.dtype}; '
                                'only float32/float64 parameters can be optimized')
            if p not in roots:
                raise ValueError(f'params[{i}] ({graph.describe(p)}) does not affect the loss, '
                                 'so it has no gradient')
            if any(p is q for q in params[:i]):
                raise ValueError(f'params[{i}] ({graph.describe(p)}) is listed twice')
        return params

    @staticmethod
    def _check_monitors(monitors):
        pairs = list(monitors.items()) if isinstance(monitors, dict) else list(monitors or ())
        names, exprs = ['loss'], []
        for i, pair in enumerate(pairs):
            if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
                raise TypeError(f'monitors[{i}] must be a (name, expression) pair, got {pair!r}')
            name, expr = pair
            if not isinstance(name, str):
                raise TypeError(f'monitors[{i}]: the name must be a str, got {name!r}')
            if name in names:
                raise ValueError(f'monitor name {name!r} is used twice')
            if isinstance(expr, (int, float, np.number)):
                expr = pt.constant(expr)
            if not isinstance(expr, Variable) or getattr(expr.type, 'ndim', None) != 0:
                raise ValueError(f'monitor {name!r} must be a scalar expression, got {expr!r}')
            names.append(name)
            exprs.append(expr)
        return names, exprs

    @staticmethod
    def _check_inputs(inputs, outputs):
        found = []
        for expr in outputs:
            for var in graph.find_inputs(expr):
                if var not in found:
                    found.append(var)
        if inputs is None:
            found = graph.creation_order(found)
            if len(found) > 1:
                log.info('inputs found in the graph, in the order they were created: %s (pass '
                         'inputs=[...] to choose the order in which batches give their arrays)',
                         ', '.join(graph.describe(v) for v in found))
            return found
        if isinstance(inputs, Variable):
            inputs = [inputs]
        inputs = list(inputs)
        for i, var in enumerate(inputs):
            if not isinstance(var, Variable) or isinstance(var, (SharedVariable, Constant)):
                raise TypeError(f'inputs[{i}] must be a symbolic input variable (e.g. pt.matrix()), '
                                f'got {type(var).__name__} {var!r}')
        missing = [v for v in found if v not in inputs]
        if missing:
            raise ValueError(f'the loss or monitors need inputs that are not in inputs=: '
                             f'{", ".join(graph.describe(v) for v in missing)}')
        return inputs

    def _check_constraints(self, constraints):
        """``{param: [op, ...]}`` from the ``constraints=`` mapping, checked."""
        if constraints is None:
            return {}
        import collections.abc
        if not isinstance(constraints, collections.abc.Mapping):
            raise TypeError('constraints must be a dict mapping parameters to operators from '
                            f'downhill.prox (or lists of them), got {type(constraints).__name__}')
        names = ', '.join(graph.describe(p) for p in self._params)
        out = {}
        for key, ops in constraints.items():
            if not any(key is p for p in self._params):
                what = graph.describe(key) if isinstance(key, Variable) else repr(key)
                raise ValueError(f'constraints: {what} is not one of the parameters being '
                                 f'optimized ({names})')
            ops = [ops] if callable(ops) else ops
            if not isinstance(ops, (list, tuple)):
                raise TypeError(f'constraints[{graph.describe(key)}] must be an operator from '
                                f'downhill.prox, a callable or a list of them, got {ops!r}')
            for i, op in enumerate(ops):
                if not callable(op):
                    raise TypeError(f'constraints[{graph.describe(key)}][{i}] is {op!r}, not a '
                                    'callable (new_value, step_size) -> expression')
            if ops:
                out[key] = list(ops)
        return out

    def _add_regularizer_monitors(self):
        """Make ``'loss'`` the composite objective when constraints carry regularizers.

        Adds ``'raw_loss'`` (the loss itself) and one monitor per regularizer
        (``'l1(w)'``) after the others; validation then compares loss +
        regularizers.
        """
        names, values = [], []
        for param, ops in self._constraints.items():
            for op in ops:
                penalty = getattr(op, 'penalty', None)
                value = penalty(param) if callable(penalty) else None
                if value is None:
                    continue
                if not isinstance(value, Variable) or getattr(value.type, 'ndim', None) != 0:
                    raise ValueError(f'the penalty of constraint {op!r} on {graph.describe(param)} '
                                     f'must be a scalar expression, got {value!r}')
                label = getattr(op, 'name', None) or type(op).__name__
                names.append(f'{label}({param.name or graph.describe(param)})')
                values.append(value)
        if not values:
            return
        names = ['raw_loss'] + names
        for name in names:
            if name in self._monitor_names or names.count(name) > 1:
                raise ValueError(f'monitor name {name!r} is used twice (the composite loss of '
                                 'proximal regularizers adds it)')
        total = self._loss
        for value in values:
            total = total + value
        self._monitor_names.extend(names)
        self._monitor_exprs[0] = total
        self._monitor_exprs.extend([self._loss] + values)
