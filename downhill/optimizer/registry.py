"""Algorithms by name: the one registry, and the lookup that suggests the closest name.

Every subclass of :class:`~downhill.optimizer.base.Optimizer` registers itself
under its lower-cased class name when it is defined; names are matched in any
case with ``-`` and ``_`` ignored (``'Newton-CG'``, ``'newton_cg'``).
"""

import difflib

_REGISTRY = {}

#: How a registered name is written in messages and docs, where it is not the name itself.
SPELLINGS = {'newtoncg': 'newton-cg'}


def key(name):
    """The registry key of an algorithm name: lower case, no ``-`` or ``_``."""
    return name.lower().replace('-', '').replace('_', '')


def register(cls):
    """Register ``cls`` under its class name; a later class of the same name replaces it."""
    _REGISTRY[key(cls.__name__)] = cls
    return cls


def unregister(name):
    """Take ``name`` (any spelling) out of the registry; the class itself still works."""
    _REGISTRY.pop(key(name), None)


def registered(name):
    """The class registered under ``name`` (any spelling), or None."""
    return _REGISTRY.get(key(name))


def algorithms():
    """Registered algorithm names mapped to their classes, sorted by name."""
    return dict(sorted(_REGISTRY.items()))


def algorithm_names():
    """The registered algorithms' names as users write them (``'newton-cg'``), sorted."""
    return sorted(SPELLINGS.get(k, k) for k in _REGISTRY)


def spelling(name):
    """``name`` as users write it (``'newtoncg'`` -> ``'newton-cg'``)."""
    k = key(name)
    return SPELLINGS.get(k, k)


def lookup(algo):
    """The Optimizer subclass for ``algo`` (a name in any spelling, or a subclass).

    An unknown name is a ValueError that suggests the closest names and lists the valid ones.
    """
    if isinstance(algo, type) and callable(getattr(algo, 'iterate', None)):
        return algo
    if not isinstance(algo, str):
        raise TypeError(f'algo must be an algorithm name or an Optimizer subclass, got {algo!r}')
    cls = registered(algo)
    if cls is None:
        close = difflib.get_close_matches(key(algo), list(_REGISTRY), n=2, cutoff=0.6)
        hint = (' (did you mean ' + ' or '.join(repr(SPELLINGS.get(c, c)) for c in close) + '?)'
                if close else '')
        raise ValueError(f'unknown algorithm {algo!r}{hint}; valid names: {", ".join(algorithm_names())}')
    return cls


__all__ = ['algorithm_names', 'algorithms', 'key', 'lookup', 'register', 'registered', 'spelling',
           'unregister']
