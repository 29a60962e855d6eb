"""The random state of a training run: finding every NumPy ``Generator`` it draws from,
seeding them, and saving/restoring their states for an exact resume.

cnnlite's random ops never touch a hidden global: dropout, random crops and initialisers each
draw from a ``np.random.Generator``, either one they were given (held as an attribute of a
layer or a transform) or a module-level default (``_default_rng`` in the op's module). A
checkpoint that is to continue *exactly* must hold the state of all of them, so
``random_generators`` looks in both places:

* every module of cnnlite that is imported (its module-level generators), and
* the attributes of the given roots (the model, the data loader), followed through nested
  objects, lists and dicts (``train_loader.dataset.transform.transforms[1].rng``).

NumPy's legacy global state (``np.random.seed``) is included for code that still uses it.
"""
from __future__ import annotations

import importlib
import sys
import zlib

import numpy as np

from cnnlite.validate import integer

__all__ = ["random_generators", "generator_states", "restore_generator_states",
           "seed_everything"]

LEGACY_GLOBAL = "numpy.random (legacy global state)"
_MAX_DEPTH = 8
_LEAF_TYPES = (np.ndarray, str, bytes, int, float, bool, type(None))


def _module_generators() -> dict:
    found = {}
    for module_name, module in sorted(sys.modules.items()):
        if module is None or not (module_name == "cnnlite" or module_name.startswith("cnnlite.")):
            continue
        for attribute, value in vars(module).items():
            if isinstance(value, np.random.Generator):
                found[f"{module_name}.{attribute}"] = value
    return found


def _children(obj):
    """(suffix, child) pairs of a container or of an object's attributes."""
    if isinstance(obj, dict):
        return [(f"[{key!r}]", value) for key, value in obj.items()]
    if isinstance(obj, (list, tuple)):
        return [(f"[{i}]", value) for i, value in enumerate(obj)]
    if hasattr(obj, "__dict__") and not isinstance(obj, type) and \
            type(obj).__module__ not in ("builtins", "types"):
        return [(f".{name}", value) for name, value in vars(obj).items()]
    return []


def _attribute_generators(name, root) -> dict:
    """Every Generator reachable from ``root`` through attributes, lists and dicts."""
    found, seen = {}, set()
    stack = [(name, root, 0)]
    while stack:
        path, obj, depth = stack.pop()
        if id(obj) in seen or isinstance(obj, _LEAF_TYPES) or depth > _MAX_DEPTH:
            continue
        seen.add(id(obj))
        if isinstance(obj, np.random.Generator):
            found[path.replace("/", "|")] = obj  # '/' separates a checkpoint's levels
            continue
        stack.extend((path + suffix, child, depth + 1)
                     for suffix, child in reversed(_children(obj)))
    return found


def random_generators(**roots) -> dict:
    """Name -> Generator for the module-level defaults of cnnlite and everything under ``roots``.

    >>> random_generators(model=model, train_loader=loader)
    {'cnnlite.nn.init._default_rng': Generator(PCG64), 'model.drop.rng': Generator(PCG64), ...}
    """
    found = _module_generators()
    for name, root in roots.items():
        if root is not None:
            found.update(_attribute_generators(name, root))
    return found


def generator_states(generators: dict) -> dict:
    """The state of each generator (plain dicts and ints) plus NumPy's legacy global state."""
    states = {name: generator.bit_generator.state for name, generator in generators.items()}
    states[LEGACY_GLOBAL] = np.random.get_state()
    return states


def restore_generator_states(generators: dict, states: dict) -> list:
    """Put saved states back into the generators of the same names.

    Module-level generators of cnnlite modules not yet imported are imported first. Returns
    the names of saved states that found no generator (the run is then not an exact repeat).
    """
    for name in states:
        module_name = name.rpartition(".")[0]
        if name.startswith("cnnlite.") and name not in generators and \
                module_name not in sys.modules:
            importlib.import_module(module_name)
            generators = {**_module_generators(), **generators}
    unmatched = []
    for name, state in states.items():
        if name == LEGACY_GLOBAL:
            np.random.set_state(state)
        elif name in generators:
            generators[name].bit_generator.state = state
        else:
            unmatched.append(name)
    return unmatched


def seed_everything(seed: int, **roots) -> None:
    """Seed every generator ``random_generators(**roots)`` finds, and NumPy's legacy global one,
    from ``seed`` (an int >= 0).

    Each generator gets its own stream, derived from ``seed`` and its name, so that (say)
    dropout and the random crops do not draw the same numbers. Generators are re-seeded in
    place: objects that hold them keep working with the new state.
    """
    seed = integer("seed_everything", "seed", seed, minimum=0, maximum=None)
    np.random.seed(seed % 2 ** 32)
    for name, generator in random_generators(**roots).items():
        stream = np.random.SeedSequence([seed, zlib.crc32(name.encode())])
        generator.bit_generator.state = type(generator.bit_generator)(stream).state
