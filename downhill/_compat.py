"""Every call that differs between the supported PyTensor versions (2.38 to 3.x).

Nothing else in the package looks at PyTensor's version: import what you need
from here.
"""

import logging
import warnings

import numpy as np
import pytensor
import pytensor.gradient

try:  # PyTensor >= 3
    from pytensor.graph.traversal import ancestors, applys_between, explicit_graph_inputs, graph_inputs
except ImportError:  # PyTensor 2.x
    from pytensor.graph.basic import ancestors, applys_between, explicit_graph_inputs, graph_inputs

from pytensor.gradient import DisconnectedInputError
from pytensor.tensor.random.op import RandomVariable

log = logging.getLogger('downhill')

PYTENSOR_VERSION = tuple(int(p) for p in pytensor.__version__.split('.')[:2] if p.isdigit())
#: The PyTensor versions this module is checked against (the package's dependency pins the
#: same range); each use of an internal below has a fallback to the public path outside it.
SUPPORTED = ((2, 38), (3, 99))


def supported(version=None):
    """Whether PyTensor ``version`` (``(major, minor)``; default the running one) is supported."""
    version = PYTENSOR_VERSION if version is None else version
    return SUPPORTED[0] <= version <= SUPPORTED[1]

__all__ = [
    'DisconnectedInputError', 'RandomVariable', 'ancestors', 'applys_between', 'explicit_graph_inputs',
    'failing_node', 'supported',
    'graph_inputs', 'hessian_vector', 'l2_norm', 'random_normal', 'shared_generator',
]


def _quietly(fn, *args):
    # PyTensor 3 renamed Rop/Lop to pushforward/pullback and warns on the old
    # names; 2.38 only has the old names.
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', FutureWarning)
        warnings.simplefilter('ignore', DeprecationWarning)
        return fn(*args)


def rop(f, wrt, v):
    """Jacobian of ``f`` with respect to ``wrt``, times ``v`` (forward mode)."""
    pushforward = getattr(pytensor.gradient, 'pushforward', None)
    if pushforward is not None:
        return pushforward(f, wrt, v)
    return _quietly(pytensor.gradient.Rop, f, wrt, v)


def lop(f, wrt, v):
    """``v`` times the Jacobian of ``f`` with respect to ``wrt`` (reverse mode)."""
    pullback = getattr(pytensor.gradient, 'pullback', None)
    if pullback is not None:
        return pullback(f, wrt, v)
    return _quietly(pytensor.gradient.Lop, f, wrt, v)


def hessian_vector(loss, grad, param, vector, method):
    """Hessian of ``loss`` with respect to ``param`` times ``vector``.

    ``method`` is 'rop' (forward over reverse), 'lop' (reverse over reverse,
    through the transposed Jacobian of the gradient) or 'grad' (the gradient of
    ``grad . vector``). All three are exact; they differ in the graph built.
    """
    if method == 'rop':
        return rop(grad, param, vector)
    if method == 'lop':
        return lop(grad, param, vector)
    if method == 'grad':
        return pytensor.grad((grad * vector).sum(), param)
    raise ValueError(f"hv_method must be 'rop', 'lop' or 'grad', got {method!r}")


def l2_norm(x, axis=None, keepdims=False):
    """The Euclidean norm of ``x`` (over ``axis``), safe from a PyTensor 2.38 rewrite.

    PyTensor 2.38's ``local_sqrt_sqr`` has its two cases swapped: it turns
    ``sqrt(sqr(x))`` into ``switch(x >= 0, x, nan)``. That graph appears
    whenever the sum in ``sqrt(sum(sqr(x)))`` is over one element (a 0-d
    gradient, a length-1 axis) and gives NaN for negative ``x``. Squaring
    ``|x|`` gives the same numbers and is rewritten correctly by every version.
    """
    return pytensor.tensor.sqrt(pytensor.tensor.sqr(abs(x)).sum(axis=axis, keepdims=keepdims))


def shared_generator(seed, name=None):
    """A shared variable holding a seeded ``numpy.random.Generator``."""
    return pytensor.shared(np.random.default_rng(seed), name=name)


def random_normal(rng, shape, dtype):
    """Draw N(0, 1) of ``shape`` from the shared generator ``rng``.

    Returns ``(next_rng, draw)``: the generator state after the draw must be
    passed as an update of ``rng`` for later calls to draw new numbers.
    """
    normal = pytensor.tensor.random.normal
    try:  # PyTensor 3 warns unless asked for the next state explicitly
        return normal(0.0, 1.0, size=shape, rng=rng, dtype=dtype, return_next_rng=True)
    except TypeError:  # PyTensor 2.x has no return_next_rng
        draw = normal(0.0, 1.0, size=shape, rng=rng, dtype=dtype)
        return draw.owner.outputs[0], draw


def failing_node(inputs, outputs, values):
    """Where the graph from ``inputs`` to ``outputs`` fails on ``values``: ``(error, culprits)``.

    The graph, as written (no rewrites), is run one node at a time with
    PyTensor's Python implementations (``PerformLinker.make_all``, the
    linker interface since Theano); at the first node that raises, returns
    its error and the variables it depends on (of ``inputs`` and the shared ones);
    ``(None, [])`` when the graph runs through. None when this PyTensor's
    linker does not have that shape (then the caller names every input).
    """
    from pytensor.compile.sharedvalue import SharedVariable
    from pytensor.graph.fg import FunctionGraph
    from pytensor.link.basic import PerformLinker
    inputs = list(inputs)
    shared = [v for v in graph_inputs(outputs) if isinstance(v, SharedVariable) and v not in inputs]
    try:
        fgraph = FunctionGraph(inputs + shared, list(outputs), clone=True)
        _, storage, _, thunks, order = PerformLinker().accept(fgraph).make_all()
        for cell, value in zip(storage, list(values) + [v.get_value(borrow=True) for v in shared]):
            cell.storage[0] = value
    except Exception as err:  # noqa: BLE001 -- an explanation only: the caller names every input
        log.debug('cannot run the graph node by node (%s: %s)', type(err).__name__, err)
        return None
    for thunk, node in zip(thunks, order):
        try:
            thunk()
        except Exception as err:  # noqa: BLE001 -- this node's error is the answer
            above = set(ancestors(node.inputs))
            return err, [var for var, clone in zip(inputs + shared, fgraph.inputs) if clone in above]
    return None, []


def get_mode(mode):
    """PyTensor's ``Mode`` for ``mode`` (a name, a Mode, or None for the configured one)."""
    from pytensor.compile.mode import get_mode as resolve
    return resolve(mode)


def compiles_quickly(mode):
    """Whether ``mode`` (a name, a Mode or None for the configured one) compiles no code.

    True for Python-only linkers (``FAST_COMPILE``, ``Mode(linker='py')``,
    a VM without C thunks); False for Numba, C, JAX and anything unknown.
    """
    from pytensor.compile.mode import get_mode
    from pytensor.link.basic import PerformLinker
    from pytensor.link.vm import VMLinker
    linker = get_mode(mode).linker
    if type(linker) is PerformLinker:  # exactly: the JIT linkers (Numba, JAX) subclass it
        return True
    return type(linker) is VMLinker and not getattr(linker, 'c_thunks', True)


def lean_caller(fn, n_args):
    """A plain function equivalent to ``fn(*args)`` with ``trust_input``, minus the bookkeeping.

    For a PyTensor 3 function compiled by a JIT linker (Numba) into one
    kernel: it passes the arguments and the shared variables' current values
    straight to the kernel and stores the updated values in the shared
    variables' storage cells, exactly what ``Function.__call__`` does, without
    its input/output storage round trip, profiling checks and clean-up loops
    (~2-3 us per call). Returns None whenever ``fn`` is not of that shape
    (other linkers, PyTensor 2.x, profiling on), so the caller keeps ``fn``.
    Only use it when the caller has checked the arguments (dtype, ndim,
    static shape) itself, as for ``trust_input``.
    """
    vm = getattr(fn, 'vm', None)
    jit = getattr(vm, 'jit_fn', None)
    cells = getattr(vm, 'inputs', None)
    try:
        storage = fn.input_storage
        updates = fn._update_input_storage
        n_out = fn._n_returned_outputs
        n_total = len(fn.output_storage)
        implicit = [bool(i.implicit) for i in fn.maker.inputs]
        has_updates = fn._has_updates
    except AttributeError:
        return None
    if (jit is None or cells is None or fn.profile or getattr(fn, 'output_keys', None) is not None
            or len(cells) != len(storage) or len(implicit) != len(storage)
            or any(c is not s.storage for c, s in zip(cells, storage))
            or implicit[:n_args] != [False] * n_args or not all(implicit[n_args:])
            or has_updates != bool(updates) or n_out + len(updates) != n_total
            or len(getattr(vm, 'outputs', ())) != n_total or n_total == 0):
        return None
    names = {'jit': jit}
    args = [f'a{i}' for i in range(n_args)]
    values = list(args)
    for i in range(n_args, len(cells)):
        names[f'c{i}'] = cells[i]
        values.append(f'c{i}[0]')
    lines = [f'def call({", ".join(args)}):', f'    out = jit({", ".join(values)})']
    for j, (k, container) in enumerate(updates):
        names[f'u{j}'] = container.storage
        lines.append(f'    u{j}[0] = out[{k}]')
    lines.append(f'    return out[:{n_out}]' if updates else '    return out')
    exec(compile('\n'.join(lines), f'<downhill lean call of {fn.name or "function"}>', 'exec'), names)
    call = names['call']
    call.function = fn
    return call


def compiles_at_first_call(fn):
    """Whether ``fn``'s machine code is compiled at its first call (PyTensor 3's Numba backend).

    Then :func:`precompile` can do it ahead, in another thread; PyTensor's
    other backends compile inside ``pytensor.function`` (False).
    """
    return getattr(getattr(fn, 'vm', None), 'jit_fn', None) is not None


def precompile(fn, args):
    """Have ``fn``'s machine code compiled for arguments like ``args``, with no update made.

    PyTensor 3's Numba backend returns from ``pytensor.function`` with the
    kernel still to compile: Numba compiles it (or loads it from its on-disk
    cache) at the first call, for the types of that call's values. This runs
    the kernel once, now, on ``args`` (the explicit inputs, which compiled
    functions never modify) and on copies of the shared variables' values
    (which the kernel may update in place), and throws the results away: the
    shared variables are untouched. Returns whether it did; for other
    backends (which compile in ``pytensor.function``) or anything unexpected,
    False, and the first call compiles as usual.
    """
    import copy
    vm = getattr(fn, 'vm', None)
    jit = getattr(vm, 'jit_fn', None)
    cells = getattr(vm, 'inputs', None)
    if jit is None or cells is None or len(args) > len(cells):
        return False
    try:
        shared = [np.copy(c[0], order='K') if isinstance(c[0], np.ndarray) else copy.deepcopy(c[0])
                  for c in cells[len(args):]]
        jit(*args, *shared)
    except Exception:  # noqa: BLE001 -- an optimization only: the first call compiles instead
        return False
    return True


def with_generated_loops(mode, tags, op_types, register_rewrites):
    """``mode`` including the rewrites tagged ``tags``, when it runs on PyTensor 3's Numba backend.

    Each of ``op_types`` (:class:`downhill.backend.stencil.StencilLoop`,
    :class:`downhill.backend.fused_sums.ElemwiseSums`) is registered with the backend
    first: an op's ``numba_source(node)`` becomes a Numba function calling the
    Numba versions of its ``numba_callees(node)``, cached on disk like
    PyTensor's generated code, and ``register_rewrites()`` puts the rewrites
    tagged ``tags`` in PyTensor's database. Any other mode (and PyTensor 2.x)
    is returned as it is.
    """
    from pytensor.compile.mode import get_mode
    resolved = get_mode(mode)
    if ('Numba' not in type(resolved.linker).__name__
            or not all(_register_generated_loop(t) for t in op_types)):
        return mode
    register_rewrites()
    try:
        return resolved.including(*tags)
    except AttributeError as err:  # a Mode whose optimizer is a single rewriter, not a query
        log.debug('mode %s keeps its own rewrites (%s)', mode, err)
        return mode


_REGISTERED = {}


def _register_generated_loop(op_type):
    if op_type in _REGISTERED:
        return _REGISTERED[op_type]
    try:
        from pytensor.link.numba.cache import compile_numba_function_src
        from pytensor.link.numba.dispatch.basic import (
            numba_funcify_and_cache_key, numba_njit, register_funcify_and_cache_key)
    except ImportError:  # PyTensor 2.x: no cache keys for generated code
        _REGISTERED[op_type] = False
        return False

    @register_funcify_and_cache_key(op_type)
    def numba_funcify_generated_loop(op, node, **kwargs):
        kwargs.pop('storage_map', None)
        names, keys = {'np': np}, []
        for name, (callee, callee_node) in op.numba_callees(node).items():
            names[name], key = numba_funcify_and_cache_key(callee, node=callee_node, **kwargs)
            keys.append(key)
        loop = compile_numba_function_src(op.numba_source(node), op.numba_name, names,
                                          write_to_disk=True)
        return numba_njit(loop), op.cache_key(node, keys)

    _REGISTERED[op_type] = True
    return True
