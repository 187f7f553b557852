"""Named components, each declared once with a decorator.

    LIKELIHOODS = Registry("likelihood")

    @LIKELIHOODS.register("poisson", help="counts 0, 1, 2, ...")
    class Poisson(ObservationModel): ...

    LIKELIHOODS["poisson"]        # the class
    LIKELIHOODS.names()           # CLI choices, in registration order
    LIKELIHOODS.help("poisson")   # one line for --help and the report

A registry is a dict of name -> object with the bookkeeping every registry needs: names are
unique (registering a taken name is a programming error, raised at import), lookups of an
unknown name fail with one line listing the known ones (a :class:`~elbokit.errors.
ConfigError`: the user picked it), and each entry carries its one-line help text. This module
imports nothing of elbokit but its errors, so any layer may declare a registry.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Self, TypeVar

from .errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Components of one kind (``what``: "likelihood", "estimator", ...) by name."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._entries: dict[str, T] = {}
        self._help: dict[str, str] = {}

    def register(self, name: str, help: str = "") -> Callable[[T], T]:
        """A decorator adding its argument under ``name`` (with a one-line ``help``; the
        object's docstring's first line when empty) and returning it unchanged."""
        def add(obj: T) -> T:
            self.add(name, obj, help)
            return obj
        return add

    def add(self, name: str, obj: T, help: str = "") -> None:
        """Register ``obj`` under ``name``; a name already taken is a programming error."""
        if name in self._entries:
            raise ValueError(f"{self.what} {name!r} is registered twice")
        self._entries[name] = obj
        doc = (getattr(obj, "__doc__", None) or "").strip().splitlines()
        self._help[name] = help or (doc[0].rstrip(".") if doc else "")

    def remove(self, name: str) -> None:
        """Drop ``name`` (a component registered for a while, e.g. by one test)."""
        del self._entries[name], self._help[name]

    def get(self, name: str, hint: str = "") -> T:
        """The entry ``name``, or one line naming the choices (``hint``: e.g. the option)."""
        if name not in self._entries:
            where = f"{hint}: " if hint else ""
            raise ConfigError(f"{where}unknown {self.what} {name!r}; choose from "
                              f"{', '.join(self._entries)}")
        return self._entries[name]

    def names(self) -> tuple[str, ...]:
        """The registered names, in registration order (the CLI's choices)."""
        return tuple(self._entries)

    def help(self, name: str) -> str:
        """The one-line description of ``name``."""
        return self._help[name]

    def describe(self) -> str:
        """``name: help`` for every entry, "; "-separated (for --help texts)."""
        return "; ".join(f"{n}: {h}" if h else n for n, h in self._help.items())

    def items(self) -> Iterator[tuple[str, T]]:
        return iter(self._entries.items())

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __contains__(self, name: Any) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.what!r}: {', '.join(self._entries)})"


@dataclass(frozen=True)
class SizedSpec:
    """A registered component chosen by name with an optional size, spelled ``NAME`` or
    ``NAME:N`` on the command line (``vamp:500``, ``iaf:2``). A subclass names its
    ``registry``, its ``flag`` and the ``letter`` its help uses for the size; a registered
    class with a size spells itself ``"name:" + letter`` in ``syntax`` and gives an
    ``example`` size, one without spells its bare name."""

    kind: str
    size: int = 0

    registry: ClassVar[Registry]
    flag: ClassVar[str]
    letter: ClassVar[str]

    def __post_init__(self) -> None:
        component = self.registry.get(self.kind, self.flag)
        sized = ":" in component.syntax
        if not sized and self.size:
            raise ConfigError(f"{self.flag} {self.kind} takes no {self.letter}: write "
                              f"{self.flag} {self.kind}")
        if sized and self.size < 1:
            raise ConfigError(f"{self.flag} {self.kind} needs {self.letter} >= 1: write "
                              f"{self.kind}:{self.letter}, e.g. {self.kind}:{component.example}")

    @classmethod
    def parse(cls, text: str) -> Self:
        match = re.fullmatch(r"([\w-]+)(?::(\d+))?", str(text).strip())
        if not match or match.group(1) not in cls.registry:
            raise ConfigError(f"{cls.flag} {text!r} is not one of {cls.syntax()}")
        return cls(match.group(1), int(match.group(2) or 0))

    @classmethod
    def syntax(cls) -> str:
        """The spellings of every registered kind, for errors."""
        return ", ".join(cls.registry[name].syntax for name in cls.registry)

    @classmethod
    def describe(cls) -> str:
        """``spelling: help`` of every registered kind, for ``--help``."""
        return "; ".join(f"{cls.registry[name].syntax}: {cls.registry.help(name)}"
                         for name in cls.registry)

    def __str__(self) -> str:
        return f"{self.kind}:{self.size}" if self.size else self.kind
