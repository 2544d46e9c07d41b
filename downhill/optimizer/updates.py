"""Assembling the update pairs of a step: gradients, clipping, momentum, step sizes, constraints.

An algorithm gives its rule for one parameter (``_get_updates_for``); the
rest of a step, common to every algorithm, is assembled here.
"""

import logging

import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.graph.basic import Variable

from ..core import graph, hyperparams, nonfinite, transforms

from .hyperparameters import LOOP_KEYWORDS

log = logging.getLogger('downhill')


class UpdateAssembly:
    """The update assembly of :class:`~downhill.optimizer.base.Optimizer`."""

    #: Whether the algorithm applies ``weight_decay`` itself, decoupled from the
    #: gradient (AdamW); otherwise it is added to the gradient here (L2).
    decoupled_weight_decay = False

    def _differentiate(self):
        """Each parameter with its gradient, clipped or rescaled as configured."""
        for param, grad in zip(self._params, self._grads):
            if self.max_gradient_elem > 0:
                grad = transforms.clip_gradient_elements(grad, self._hyper('_max_gradient_elem', param))
            elif self.max_gradient_norm > 0:
                grad = transforms.rescale_gradient_norm(grad, self._hyper('_max_gradient_norm', param))
            if self.weight_decay > 0 and not self.decoupled_weight_decay:
                grad = transforms.add_weight_decay(grad, param, self._hyper('_weight_decay', param))
            yield param, grad

    def get_updates(self, **kwargs):
        """The (shared variable, expression) pairs of one optimization step.

        Keyword arguments set hyperparameters, as for :meth:`iterate`. The
        pairs can be compiled into any function, e.g.
        ``pytensor.function([x], loss, updates=opt.get_updates(learning_rate=0.1))``.

        Numeric hyperparameters are read from shared variables held by this
        optimizer: a later call that changes them changes them for every
        function compiled from this optimizer's updates.

        The pairs include the constraints given to :func:`downhill.build`
        and the increment of :attr:`update_count` (which schedules read), so
        a function compiled from them behaves like a step of
        :meth:`iterate`. With a constraint and momentum, whatever the
        constraint changes in the parameter is also added to the stored
        velocity: with classical momentum the velocity is then the actual
        move :math:`p_{t+1} - p_t` (projected heavy-ball), so it never
        accumulates motion that the constraint undoes.

        With ``on_nonfinite='skip'`` every pair is guarded as in
        :meth:`iterate` (see :mod:`downhill.core.nonfinite`): a step with a
        non-finite loss or gradient changes nothing.

        Returns
        -------
        list of (shared variable, expression) pairs
        """
        for name in LOOP_KEYWORDS:
            kwargs.pop(name, None)
        kwargs.pop('reset', None)
        settings = self._settings()
        try:
            policy = hyperparams.choice('on_nonfinite', kwargs.pop('on_nonfinite', 'stop'),
                                        nonfinite.POLICIES)
            self._prepare(**kwargs)
            pairs = self._build_updates()
        except BaseException:
            self._restore_settings(settings)
            raise
        return self._guard(pairs) if policy == 'skip' else pairs

    def _build_updates(self):
        pairs = []
        self._step_sizes = {}
        for param, grad in self._differentiate():
            # run the algorithm's generator to the end first: it records the step size
            for var, expr in list(self._get_updates_for(param, grad)):
                if var is not param:
                    pairs.append((var, _as_type(expr, var)))
                    continue
                step = _as_type(expr, param)
                if not self._uses_momentum():
                    pairs.append((param, self._constrain(param, param - step)))
                    continue
                velocity = self._state(param, 'velocity')
                rule = transforms.nesterov_step if self.nesterov else transforms.momentum_step
                new_velocity, new_param = rule(param, step, velocity, self._hyper('_momentum', param))
                if param in self._constraints:
                    constrained = self._constrain(param, new_param)
                    new_velocity = new_velocity + (constrained - new_param)
                    new_param = constrained
                pairs.append((velocity, new_velocity))
                pairs.append((param, new_param))
        pairs.extend(self._finish_updates())
        pairs.append((self.update_count, self.update_count + 1))
        return pairs

    def _set_step_size(self, param, size):
        """Record the per-element step size of ``param``'s update, for proximal operators.

        An algorithm whose step is :math:`s = D \\odot d` for a search
        direction :math:`d` (the gradient or its running mean) and a positive
        diagonal preconditioner :math:`D` (the learning rate included) calls
        this with :math:`D`, an expression in the new state, from
        :meth:`_get_updates_for`. The default is the learning rate.
        """
        self._step_sizes[param] = size

    def _step_size(self, param):
        size = self._step_sizes.get(param)
        return self._hyper('learning_rate', param) if size is None else _as_type(size, param)

    def _project_start(self):
        """Put each constrained parameter on its constraints before the first validation.

        So that the best parameters a run keeps (the start, if no update
        improves on it) are feasible. Each constraint is applied with a step
        size of 0: projections project, proximal operators of regularizers
        (``prox.l1``...) leave the value as it is.
        """
        if not self._constraints:
            return
        params = list(self._constraints)
        project = getattr(self, '_projection', None)
        if project is None:  # compiled once: a later call of iterate() compiles nothing
            zero = {p: pt.as_tensor_variable(np.zeros((), dtype=p.dtype)) for p in params}
            projected = []
            for param in params:
                value = param
                for op in self._constraints[param]:
                    value = _as_type(op(value, zero[param]), param)
                projected.append(value)
            project = self._projection = pytensor.function([], projected, mode='FAST_COMPILE',
                                                           name='projection')
        values = project()
        for param, value in zip(params, values):
            old = param.get_value(borrow=True)
            if not np.array_equal(old, value):
                log.info('%s: the start of %s is not on its constraints; projected onto them '
                         '(largest change %.3g)', type(self).__name__, graph.describe(param),
                         float(np.max(np.abs(np.asarray(old, dtype=float) - value))))
                _assign(param, value)

    def _constrain(self, param, value):
        """``value`` (the parameter's new value) after the constraints on ``param``."""
        ops = self._constraints.get(param)
        if not ops:
            return value
        size = self._step_size(param)
        for op in ops:
            out = op(value, size)
            if not isinstance(out, Variable):
                out = pt.as_tensor_variable(out)
            if getattr(out.type, 'ndim', None) != param.type.ndim:
                raise ValueError(f'constraint {op!r} on {graph.describe(param)} returned an '
                                 f'expression with {getattr(out.type, "ndim", "?")} dimensions; '
                                 f'the parameter has {param.type.ndim}')
            value = param.type.filter_variable(_as_type(out, param), allow_convert=True)
        return value

    def _get_updates_for(self, param, grad):
        """Yield the update pairs for one parameter.

        For ``var is param`` the expression is the step ``s`` (the library
        subtracts it, applying momentum if set); for any other variable (the
        algorithm's own state, usually made with :meth:`_state`) it is that
        variable's new value.
        """
        raise NotImplementedError(f'{type(self).__name__} must implement _get_updates_for(param, grad)')

    def _finish_updates(self):
        """Updates that belong to no single parameter (none by default)."""
        return ()

    def _guard(self, pairs):
        """``pairs`` applied only when the loss, gradients and new parameters are finite."""
        counter = self._states.get(nonfinite.SKIPPED)
        if counter is None:
            counter = self._states[nonfinite.SKIPPED] = nonfinite.make_counter()
            self._state_inits[nonfinite.SKIPPED] = 0
        return nonfinite.guard(pairs, self._loss, self._grads, self._params, counter)


def _assign(param, value):
    """Give shared ``param`` the values of array ``value`` (checked to have its shape).

    Copied into the parameter's own buffer when it can be (a NumPy array of
    the same shape, writeable, not overlapping ``value``), so setting the
    parameters allocates nothing; otherwise a converted copy replaces it.
    """
    storage = param.get_value(borrow=True)
    if storage is value:
        return
    if (type(storage) is np.ndarray and storage.shape == value.shape and storage.flags.writeable
            and not np.may_share_memory(storage, value)):
        np.copyto(storage, value, casting='unsafe')
        param.set_value(storage, borrow=True)
    else:
        param.set_value(np.array(value, dtype=storage.dtype, copy=True), borrow=True)


def _as_type(expr, var):
    """``expr`` with ``var``'s dtype (a safety net for user algorithms)."""
    if not isinstance(expr, Variable):
        expr = pt.as_tensor_variable(np.asarray(expr, dtype=var.dtype))
    return expr if expr.dtype == var.dtype else pt.cast(expr, var.dtype)
