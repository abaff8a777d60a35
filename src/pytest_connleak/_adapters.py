"""What every client adapter shares: the registry, the patcher, and the install step.

Adding a client is one new module that defines an :class:`Adapter` and one line in
:data:`ADAPTERS`.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import threading
from collections.abc import Callable, Sequence
from typing import Any

from ._ledger import Lease, Ledger

__all__ = [
    "ADAPTERS",
    "Adapter",
    "Incompatible",
    "Instrumentation",
    "Patcher",
    "expect_signature",
]

ADAPTERS: tuple[str, ...] = (
    "pytest_connleak._urllib3:Urllib3Adapter",
    "pytest_connleak._httpcore:HttpcoreAdapter",
    "pytest_connleak._aiohttp:AiohttpAdapter",
)
"""``module:Class`` of every adapter, in install order."""

# Packages whose frames are never a lease site, whether or not we patch them: a user
# calling requests must be pointed at their line, not at requests' internals.
HTTP_LIBRARIES = ("urllib3", "requests", "httpx", "httpcore", "aiohttp", "anyio", "trio")
# Reaching these while looking for the lease site means no user frame asked for it.
TEST_RUNNERS = ("_pytest", "pluggy", "pytest_asyncio")


class Incompatible(Exception):
    """Raised by :meth:`Adapter.install` when the library's internals are not as expected."""


class Patcher:
    """Replaces attributes and puts the originals back, whatever happened in between."""

    def __init__(self) -> None:
        self._patches: list[tuple[Any, str, Any, Any]] = []

    def wrap(self, owner: Any, name: str, make: Callable[[Any], Any]) -> None:
        """Replace ``owner.name`` with ``make(original)``, keeping the original's metadata."""
        original = owner.__dict__[name]
        wrapper = functools.wraps(original)(make(original))
        setattr(owner, name, wrapper)
        self._patches.append((owner, name, original, wrapper))

    def restore(self) -> None:
        """Put every original back, newest patch first."""
        while self._patches:
            owner, name, original, wrapper = self._patches.pop()
            if owner.__dict__.get(name) is wrapper:
                setattr(owner, name, original)

    def __len__(self) -> int:
        return len(self._patches)


def expect_signature(owner: Any, name: str, params: Sequence[str]) -> None:
    """Raise :class:`Incompatible` unless ``owner.name`` takes exactly *params*."""
    func = owner.__dict__.get(name)
    if func is None:
        raise Incompatible(f"{owner.__module__}.{owner.__qualname__}.{name} does not exist")
    got = list(inspect.signature(func).parameters)
    if got != list(params):
        raise Incompatible(
            f"{owner.__module__}.{owner.__qualname__}.{name}{tuple(got)} "
            f"does not take {tuple(params)}"
        )


class Adapter:
    """Base class of a client adapter.

    Subclasses set ``name``, ``module`` (the import that must succeed) and ``hint`` and
    implement :meth:`patch`. ``version`` is read for messages only.
    """

    name: str = ""
    module: str = ""
    hint: str = "close the response, or read its body to the end"

    def advise(self, lease: Lease) -> str:
        """The fix to suggest for *lease*, which this adapter recorded."""
        return self.hint

    def available(self) -> bool:
        """True when the client library can be imported."""
        try:
            return importlib.util.find_spec(self.module) is not None
        except (ImportError, ValueError):
            return False

    def version(self) -> str:
        mod = importlib.import_module(self.module)
        return str(getattr(mod, "__version__", "?"))

    def patch(self, ledger: Ledger, patcher: Patcher) -> None:
        """Check the library's internals (raise :class:`Incompatible`) and wrap them."""
        raise NotImplementedError


def load_adapters(paths: Sequence[str] = ADAPTERS) -> list[Adapter]:
    adapters = []
    for path in paths:
        module, _, cls = path.partition(":")
        adapters.append(getattr(importlib.import_module(module), cls)())
    return adapters


class Instrumentation:
    """The patches of every available adapter, installed once and removed once."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.installed: list[Adapter] = []
        self.skipped: list[tuple[Adapter, str]] = []
        self._patcher = Patcher()
        self._lock = threading.Lock()
        self.active = False

    def install(self) -> list[str]:
        """Patch every available client; return one message per client skipped."""
        with self._lock:
            if self.active:
                return []
            self.active = True
            self.ledger.add_library(*HTTP_LIBRARIES)
            self.ledger.add_boundary(*TEST_RUNNERS)
            problems = []
            for adapter in load_adapters():
                if not adapter.available():
                    continue
                mark = len(self._patcher)
                try:
                    adapter.patch(self.ledger, self._patcher)
                except Incompatible as exc:
                    self._undo_to(mark)
                    self.skipped.append((adapter, str(exc)))
                    problems.append(
                        f"pytest-connleak cannot track {adapter.name} {adapter.version()}: "
                        f"{exc}; leaks through {adapter.name} will not be reported"
                    )
                else:
                    self.installed.append(adapter)
            return problems

    def _undo_to(self, mark: int) -> None:
        tail = Patcher()
        tail._patches = self._patcher._patches[mark:]
        del self._patcher._patches[mark:]
        tail.restore()

    def uninstall(self) -> None:
        """Remove every patch."""
        with self._lock:
            self._patcher.restore()
            self.installed.clear()
            self.active = False

    def advise(self, lease: Lease) -> str:
        """The fix to suggest for *lease*, from the adapter that recorded it."""
        for adapter in self.installed:
            if adapter.name == lease.client:
                return adapter.advise(lease)
        return Adapter.hint
