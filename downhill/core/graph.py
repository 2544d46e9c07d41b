"""Finding what a loss depends on: its parameters, inputs and random streams."""

import logging

import pytensor
from pytensor.compile.builders import OpFromGraph
from pytensor.compile.sharedvalue import SharedVariable
from pytensor.graph.basic import Constant, Variable
from pytensor.tensor.sharedvar import TensorSharedVariable

from .. import _compat

log = logging.getLogger('downhill')


def check_loss(loss):
    """Raise a clear error unless ``loss`` is a scalar symbolic expression."""
    if not isinstance(loss, Variable):
        raise TypeError(
            f'loss must be a scalar PyTensor expression, got {type(loss).__name__}')
    ndim = getattr(loss.type, 'ndim', None)
    if ndim != 0:
        raise ValueError(
            f'loss must be a scalar (0-d) expression, got one with ndim={ndim} '
            f'(type {loss.type}); reduce it, e.g. with .mean() or .sum()')
    if not str(loss.dtype).startswith('float'):
        raise TypeError(f'loss must have a float dtype, got {loss.dtype}')


def creation_order(variables):
    """``variables`` sorted in the order they were created.

    That is the order a user thinks in (``w`` before ``b``, ``x`` before
    ``y``), unlike the order of a graph walk, which depends on how the
    expression happens to be written.
    """
    def key(var):
        try:
            return int(str(var.auto_name).rsplit('_', 1)[1])
        except (AttributeError, IndexError, ValueError):
            return float('inf')
    return sorted(variables, key=key)


def find_params(loss, exclude=()):
    """The float tensor shared variables that ``loss`` depends on, in creation order.

    Shared variables in ``exclude`` (those with explicit update expressions,
    i.e. internal state of the loss) are not parameters.
    """
    exclude = set(exclude)
    params = []
    for var in _compat.graph_inputs([loss]):
        if (isinstance(var, TensorSharedVariable) and var not in exclude
                and str(var.dtype).startswith('float') and var not in params):
            params.append(var)
    return creation_order(params)


def find_inputs(loss):
    """The symbolic inputs of ``loss``: roots that are neither shared nor constant, in creation order."""
    inputs = []
    for var in _compat.explicit_graph_inputs([loss]):
        if not isinstance(var, (SharedVariable, Constant)) and var not in inputs:
            inputs.append(var)
    return creation_order(inputs)


def random_updates(outputs, already=()):
    """Updates that advance every shared random generator drawn from in ``outputs``.

    Without them a compiled function returns the same draw on every call.
    Generators that already have an update (in ``already``) or a
    ``default_update`` are left alone. Draws hidden inside an
    ``OpFromGraph`` (``pm.Minibatch`` makes one) count when the op takes the
    generator as an input and returns its next state as an output.
    """
    already = set(already)
    updates = {}
    roots = _compat.graph_inputs(outputs)
    for node in _compat.applys_between(roots, outputs):
        for rng, next_rng in _generator_steps(node):
            if (isinstance(rng, SharedVariable) and rng not in already and rng not in updates
                    and getattr(rng, 'default_update', None) is None):
                updates[rng] = next_rng
    return list(updates.items())


def _generator_steps(node):
    """(generator, its next state) pairs of one apply node, looking inside OpFromGraph."""
    if isinstance(node.op, _compat.RandomVariable):
        return [(node.inputs[0], node.outputs[0])]
    if not isinstance(node.op, OpFromGraph):
        return []
    op = node.op
    inner_in = {var: i for i, var in enumerate(op.inner_inputs)}
    inner_out = {var: i for i, var in enumerate(op.inner_outputs)}
    steps = []
    for inner in _compat.applys_between(op.inner_inputs, op.inner_outputs):
        for rng, next_rng in _generator_steps(inner):
            if rng in inner_in and next_rng in inner_out:
                steps.append((node.inputs[inner_in[rng]], node.outputs[inner_out[next_rng]]))
    return steps


def describe(var, index=None):
    """A short human name for a variable in error messages."""
    name = getattr(var, 'name', None)
    where = f' #{index}' if index is not None else ''
    return f"'{name}'" if name else f'<unnamed {getattr(var, "type", type(var).__name__)}{where}>'


__all__ = ['check_loss', 'find_params', 'find_inputs', 'random_updates', 'describe']
del pytensor
