"""Containers: modules whose job is to hold other modules.

``Sequential`` runs its children one after another; ``ModuleList`` and ``ModuleDict`` only hold
them (registered, so their parameters are found), and the owner's ``forward`` decides the order.
Children of Sequential and ModuleList are named ``"0"``, ``"1"``, ..., which is where state-dict
keys such as ``features.0.weight`` come from.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Iterable, Iterator, Mapping

from cnnlite.nn.module import Module
from cnnlite.validate import is_integer


def _check_module(value, where):
    if not isinstance(value, Module):
        raise TypeError(f"{where}: expected a Module, got {type(value).__name__}")
    return value


def _checked_index(owner: str, index, n: int) -> int:
    """A child's position from an int index (negative from the end); a bool or a float is a
    mistake, not position 1 or 1.5."""
    if not is_integer(index):
        raise TypeError(f"{owner}: indices must be ints or slices, got {type(index).__name__} "
                        f"{index!r}")
    if not -n <= index < n:
        raise IndexError(f"{owner}: index {index} out of range for {n} modules")
    return int(index) % n


class Sequential(Module):
    """Chain of modules: ``Sequential(a, b, c)(x) == c(b(a(x)))``.

    Built from modules (named ``"0"``, ``"1"``, ...) or from one ``OrderedDict`` of
    name -> module. Indexing gives a child (``seq[0]``) or a new Sequential (``seq[1:3]``).
    """

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            for name, module in modules[0].items():
                self.add_module(name, _check_module(module, f"Sequential[{name!r}]"))
        else:
            for index, module in enumerate(modules):
                self.add_module(str(index), _check_module(module, f"Sequential[{index}]"))

    def forward(self, x):
        for module in self._modules.values():
            x = module(x)
        return x

    def _index(self, index: int) -> int:
        return _checked_index(type(self).__name__, index, len(self))

    def __getitem__(self, index):
        items = list(self._modules.items())
        if isinstance(index, slice):
            return Sequential(OrderedDict(items[index]))
        return items[self._index(index)][1]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def append(self, module: Module) -> "Sequential":
        self.add_module(str(len(self)), _check_module(module, "Sequential.append"))
        return self


class ModuleList(Module):
    """A list of modules that registers them (a plain Python list would hide their parameters)."""

    def __init__(self, modules: Iterable[Module] = ()):
        super().__init__()
        self.extend(modules)

    def _index(self, index: int) -> int:
        return _checked_index("ModuleList", index, len(self))

    def __getitem__(self, index):
        modules = list(self._modules.values())
        if isinstance(index, slice):
            return ModuleList(modules[index])
        return modules[self._index(index)]

    def __setitem__(self, index: int, module: Module):
        self.add_module(str(self._index(index)), _check_module(module, "ModuleList[...] ="))

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def append(self, module: Module) -> "ModuleList":
        self.add_module(str(len(self)), _check_module(module, "ModuleList.append"))
        return self

    def extend(self, modules: Iterable[Module]) -> "ModuleList":
        for module in modules:
            self.append(module)
        return self

    def insert(self, index: int, module: Module):
        """Insert before ``index``; the children after it are renumbered."""
        if not is_integer(index):
            raise TypeError(f"ModuleList.insert: index must be an int, got "
                            f"{type(index).__name__} {index!r}")
        modules = list(self._modules.values())
        modules.insert(index, _check_module(module, "ModuleList.insert"))
        self._modules.clear()
        self.extend(modules)

    def forward(self, *inputs):
        raise TypeError("ModuleList is not callable: iterate over it in the owner's forward()")


class ModuleDict(Module):
    """A dict of name -> module that registers them, in insertion order."""

    def __init__(self, modules: Mapping[str, Module] | None = None):
        super().__init__()
        for name, module in (modules or {}).items():
            self[name] = module

    def __getitem__(self, name: str) -> Module:
        return self._modules[name]

    def __setitem__(self, name: str, module: Module):
        self.add_module(name, _check_module(module, f"ModuleDict[{name!r}] ="))

    def __delitem__(self, name: str):
        del self._modules[name]

    def __contains__(self, name) -> bool:
        return name in self._modules

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[str]:
        return iter(self._modules)

    def keys(self):
        return self._modules.keys()

    def values(self):
        return self._modules.values()

    def items(self):
        return self._modules.items()

    def forward(self, *inputs):
        raise TypeError("ModuleDict is not callable: pick its modules in the owner's forward()")
