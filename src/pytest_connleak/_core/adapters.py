"""What every client adapter shares: the registry, the patcher, and the install step.

Adding a client is one new module that defines an :class:`Adapter` and one line in
:data:`ADAPTERS`.
"""

from __future__ import annotations

import functools
import importlib
import importlib.abc
import importlib.util
import inspect
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

from .ledger import Lease, Ledger, PoolRecord, ledger
from .sdks import SDK_PACKAGES, sdk_hint
from .warnings import IncompatibleClientWarning

__all__ = [
    "ADAPTERS",
    "Adapter",
    "Incompatible",
    "Instrumentation",
    "Patcher",
    "acquire_instrumentation",
    "expect_signature",
    "release_instrumentation",
]

ADAPTERS: tuple[str, ...] = (
    "pytest_connleak._clients.urllib3:Urllib3Adapter",
    "pytest_connleak._clients.httpcore:HttpcoreAdapter",
    "pytest_connleak._clients.httpcore:Httpcore2Adapter",
    "pytest_connleak._clients.aiohttp:AiohttpAdapter",
    "pytest_connleak._clients.sqlalchemy:SqlalchemyAdapter",
    "pytest_connleak._clients.psycopg_pool:PsycopgPoolAdapter",
    "pytest_connleak._clients.redis:RedisAdapter",
    "pytest_connleak._clients.asyncpg:AsyncpgAdapter",
)
"""``module:Class`` of every adapter, in install order."""

# The ``name`` and ``module`` (the client package it waits for) of each adapter, known
# without importing the adapter's module: a checked run imports only the adapters of the
# clients it imports (each of our modules costs a pytest run about 0.5 ms of start-up
# through pytest's assertion-rewriting import hook). tests/test_lazy_imports.py checks that
# they agree with the adapters' own.
_CLIENTS: dict[str, tuple[str, str]] = {
    "pytest_connleak._clients.urllib3:Urllib3Adapter": ("urllib3", "urllib3"),
    "pytest_connleak._clients.httpcore:HttpcoreAdapter": ("httpcore", "httpcore"),
    "pytest_connleak._clients.httpcore:Httpcore2Adapter": ("httpcore2", "httpcore2"),
    "pytest_connleak._clients.aiohttp:AiohttpAdapter": ("aiohttp", "aiohttp"),
    "pytest_connleak._clients.sqlalchemy:SqlalchemyAdapter": ("sqlalchemy", "sqlalchemy"),
    "pytest_connleak._clients.psycopg_pool:PsycopgPoolAdapter": ("psycopg_pool", "psycopg_pool"),
    "pytest_connleak._clients.redis:RedisAdapter": ("redis", "redis"),
    "pytest_connleak._clients.asyncpg:AsyncpgAdapter": ("asyncpg", "asyncpg"),
}

# Packages whose frames are never a lease site, whether or not we patch them: a user
# calling requests must be pointed at their line, not at requests' internals.
HTTP_LIBRARIES = (
    "urllib3",
    "requests",
    "httpx",
    "httpcore",
    "httpx2",
    "httpcore2",
    "aiohttp",
    "anyio",
    "trio",
)
# The same for the database and cache clients (and the greenlet SQLAlchemy's asyncio runs in).
DB_LIBRARIES = ("sqlalchemy", "greenlet", "psycopg", "psycopg_pool", "redis", "asyncpg")
# Reaching these while looking for the lease site means no user frame asked for it.
# backports.asyncio.runner: asyncio.Runner, which pytest-asyncio uses on Python 3.10.
TEST_RUNNERS = ("_pytest", "pluggy", "pytest_asyncio", "backports.asyncio.runner")


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

    def on_restore(self, undo: Callable[[], None]) -> None:
        """Call *undo* when the patches are restored (for listeners added by public APIs)."""
        self._patches.append((None, "", undo, None))

    def restore(self) -> None:
        """Put every original back, newest patch first."""
        while self._patches:
            owner, name, original, wrapper = self._patches.pop()
            if owner is None:
                original()
            elif owner.__dict__.get(name) is wrapper:
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


def wait_counter(ledger: Ledger, client: str) -> Callable[[PoolRecord], None]:
    """``ledger.note_wait`` for *client*'s wrappers: it never raises into the pool's caller.

    A failure is recorded as an internal error of *client*, reported once at the end.
    """

    def note_wait(rec: PoolRecord) -> None:
        try:
            ledger.note_wait(rec)
        except Exception as exc:
            ledger.internal_error(client, "counting a wait for a connection", exc)

    return note_wait


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


def _load(path: str) -> Adapter:
    module, _, cls = path.partition(":")
    adapter: Adapter = getattr(importlib.import_module(module), cls)()
    return adapter


def load_adapters(paths: Sequence[str] = ADAPTERS) -> list[Adapter]:
    return [_Deferred(path, *_CLIENTS[path]) if path in _CLIENTS else _load(path) for path in paths]


class _Deferred(Adapter):
    """A registered adapter whose module is imported when it is first needed.

    That is when its client is imported (to patch it) or a lease of it is reported.
    """

    def __init__(self, path: str, name: str, module: str) -> None:
        self.name = name
        self.module = module
        self._path = path
        self._adapter: Adapter | None = None

    def load(self) -> Adapter:
        """The adapter itself, its module imported on the first call."""
        if self._adapter is None:
            self._adapter = _load(self._path)
        return self._adapter

    def advise(self, lease: Lease) -> str:
        return self.load().advise(lease)

    def patch(self, ledger: Ledger, patcher: Patcher) -> None:
        self.load().patch(ledger, patcher)


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Patches a client right after its package is first imported (a post-import hook).

    It sits at the front of ``sys.meta_path`` and answers only for the packages of
    adapters still waiting: it asks the finders behind it for the spec, as the import
    system would have, and wraps the loader so that the adapter's ``patch`` runs once
    the package has executed. The module object, its ``__loader__``, ``__spec__`` and
    any exception raised while it executes are exactly those of a normal import.
    """

    def __init__(self, instrumentation: Instrumentation) -> None:
        self._instrumentation = instrumentation

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        if fullname not in self._instrumentation._pending:
            return None  # the common case: one dict lookup per import
        meta_path = sys.meta_path
        try:
            behind = meta_path[meta_path.index(self) + 1 :]
        except ValueError:  # removed meanwhile
            return None
        for finder in behind:
            find = getattr(finder, "find_spec", None)
            if find is None:
                continue
            spec: ModuleSpec | None = find(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return None  # nothing we can wrap: the import goes on without us
        spec.loader = _PatchAfterExec(loader, self._instrumentation)
        return spec


class _PatchAfterExec(importlib.abc.Loader):
    """The real loader, then the adapter's patch; puts the real loader back first."""

    def __init__(self, loader: Any, instrumentation: Instrumentation) -> None:
        self._loader = loader
        self._instrumentation = instrumentation

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        module: ModuleType | None = self._loader.create_module(spec)
        return module

    def exec_module(self, module: ModuleType) -> None:
        # Before the package's code runs, so that nothing can see this wrapper: pkgutil,
        # importlib.resources and inspect read __loader__ and __spec__.loader.
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        self._loader.exec_module(module)  # its exceptions are the import's, unchanged
        self._instrumentation._imported(module.__name__)


class Instrumentation:
    """The patches of every available adapter, installed once and removed once.

    A client already imported is patched by :meth:`install`; one that is not yet imported
    is patched when it first is (so a suite pays only for the clients it uses).
    """

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.installed: list[Adapter] = []
        self.skipped: list[tuple[Adapter, str]] = []
        #: Problems found at import time whose warning the user escalated to an error.
        self.escalated: list[str] = []
        #: Adapters waiting for their package to be imported, by package name.
        self._pending: dict[str, Adapter] = {}
        self._finder: _PatchOnImport | None = None
        self._patcher = Patcher()
        # Reentrant: a patch that imports another client's package runs that hook inline.
        self._lock = threading.RLock()
        self.active = False

    @property
    def pending(self) -> list[Adapter]:
        """Available adapters whose client is not imported yet, in install order."""
        return list(self._pending.values())

    def install(self) -> list[str]:
        """Patch every imported client, hook the others; one message per client skipped."""
        with self._lock:
            if self.active:
                return []
            self.active = True
            self.ledger.add_library(*HTTP_LIBRARIES, *DB_LIBRARIES, *SDK_PACKAGES)
            self.ledger.add_boundary(*TEST_RUNNERS)
            problems = []
            for adapter in load_adapters():
                if adapter.module not in sys.modules:
                    if adapter.available():
                        self._pending[adapter.module] = adapter
                    continue
                problem = self._patch(adapter)
                if problem is not None:
                    problems.append(problem)
            if self._pending:
                self._finder = _PatchOnImport(self)
                # A new list rather than insert(): a thread iterating the old one in the
                # middle of an import must see it unchanged (see _remove_finder).
                sys.meta_path = [self._finder, *sys.meta_path]
                # Imported between the check above and the hook: patch it now.
                for name in [n for n in self._pending if n in sys.modules]:
                    self._imported(name)
            return problems

    def _patch(self, adapter: Adapter) -> str | None:
        mark = len(self._patcher)
        try:
            adapter.patch(self.ledger, self._patcher)
        except Incompatible as exc:
            self._undo_to(mark)
            self.skipped.append((adapter, str(exc)))
            return (
                f"pytest-connleak cannot track {adapter.name} {adapter.version()}: "
                f"{exc}; leaks through {adapter.name} will not be reported"
            )
        self.installed.append(adapter)
        return None

    def _imported(self, name: str) -> None:
        """Patch the adapter waiting for *name*, which has just been imported."""
        with self._lock:
            adapter = self._pending.pop(name, None)
            if adapter is None or not self.active:
                return
            if not self._pending:
                self._remove_finder()
            mark = len(self._patcher)
            try:
                problem = self._patch(adapter)
            except Exception as exc:  # never turn a working import into a failing one
                self._undo_to(mark)
                self.skipped.append((adapter, repr(exc)))
                problem = (
                    f"pytest-connleak cannot track {adapter.name}: patching it failed "
                    f"({exc!r}); leaks through {adapter.name} will not be reported"
                )
        if problem is not None:
            try:
                warnings.warn(IncompatibleClientWarning(problem), stacklevel=2)
            except Warning:
                # The user made it an error (filterwarnings). Raising here would make the
                # code under test's import fail; the plugin fails the run at its end.
                self.escalated.append(problem)

    def _remove_finder(self) -> None:
        finder, self._finder = self._finder, None
        if finder is not None:
            # Rebound, not list.remove(): removing the first entry of the list that
            # another thread is iterating would make it skip the next finder.
            sys.meta_path = [f for f in sys.meta_path if f is not finder]

    def _undo_to(self, mark: int) -> None:
        tail = Patcher()
        tail._patches = self._patcher._patches[mark:]
        del self._patcher._patches[mark:]
        tail.restore()

    def uninstall(self) -> None:
        """Remove every patch and the import hook."""
        with self._lock:
            self._remove_finder()
            self._pending.clear()
            self._patcher.restore()
            self.installed.clear()
            self.active = False

    def advise(self, lease: Lease) -> str:
        """The fix for *lease*: its adapter's, with the SDK's fix when it came through one."""
        advice = Adapter.hint
        for adapter in self.installed:
            if adapter.name == lease.client:
                advice = adapter.advise(lease)
                break
        fix = sdk_hint(lease)
        if fix is None:
            return advice
        # An adapter's advice reads "what happened; how to fix it": keep what happened
        # (the client was closed, garbage collection closed the socket), the SDK's fix
        # replaces the HTTP client's, which the user never called.
        happened = advice.rpartition("; ")[0]
        return f"{happened}; {fix}" if happened else fix


# The process-wide instrumentation, shared by the plugin and the plain-Python API
# (no_leaks(), the mixin, track()) and counted by its users, so that a no_leaks() block
# inside a pytest run never patches the clients a second time (which would count every
# lease twice) and never removes the plugin's patches when it ends.
SHARED_INSTRUMENTATION = Instrumentation(ledger)
_users = 0
_problems: list[str] = []
_shared_lock = threading.Lock()


def acquire_instrumentation() -> tuple[Instrumentation, list[str]]:
    """Install the process-wide instrumentation for one more user.

    Returns it with one message per client that could not be tracked (the same messages
    to every user, so the plugin can warn about them whoever installed first).
    """
    global _users
    with _shared_lock:
        if _users == 0:
            _problems[:] = SHARED_INSTRUMENTATION.install()
        _users += 1
        return SHARED_INSTRUMENTATION, list(_problems)


def release_instrumentation() -> None:
    """Give back one :func:`acquire_instrumentation`; the last user removes the patches."""
    global _users
    with _shared_lock:
        if _users == 0:
            return
        _users -= 1
        if _users == 0:
            SHARED_INSTRUMENTATION.uninstall()
