"""Ignore patterns: the syntax of a rule, and whether a lease matches it.

This module knows nothing of pytest. A rule has a kind and a glob:

``origin``
    matched against the pool's ``scheme://host:port``. Only ``*`` and ``?`` are wildcards
    (brackets are literal, for IPv6 hosts), case is ignored, and a pattern without a port
    matches every port: test servers listen on random ports, and ``https://*.example.com``
    means every port of it.
``module``
    matched against the dotted module name of the lease site; ``pkg`` and ``pkg.*`` both
    match ``pkg`` itself and every submodule.
``file``
    matched against the lease site's file, relative to the rootdir with ``/`` separators
    (``tests/legacy/*``), or absolute; ``*`` crosses directories and a trailing ``/``
    means everything below.
``site`` (markers only)
    matches the module or the file, whichever the pattern can be.

In ini lines the kind is an explicit ``origin:``/``module:``/``file:`` prefix, else it is
inferred: ``://`` makes an origin, a ``/`` (or ``\\``) or a ``.py`` ending makes a file,
anything else must be a dotted module name.
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass

from pytest_connleak._core.ledger import Lease

__all__ = ["KINDS", "VALID_FORMS", "PatternError", "Rule", "parse_rule"]

KINDS = ("origin", "module", "file")

VALID_FORMS = (
    "origin:PATTERN or scheme://host[:port] (http://localhost:*, https://*.example.com), "
    "module:PATTERN or a dotted module name (some_sdk.*), "
    "file:PATTERN or a path with / or ending in .py (tests/legacy/*)"
)
"""The forms an ini pattern may take, for error messages."""

# A kind prefix is a word of two letters or more followed by ":" but not "://", so that
# neither "http://..." nor a Windows drive ("C:\\...") reads as one.
_PREFIX = re.compile(r"^([A-Za-z][A-Za-z_]+):(?!//)(.*)$")
_MODULE = re.compile(r"^[\w.*?\[\]!]+$")
_SCHEME = re.compile(r"^[A-Za-z*?][A-Za-z0-9+.\-*?]*$")
_PORT = re.compile(r"^[0-9*?]+$")


class PatternError(ValueError):
    """A pattern that is empty, of an unknown kind, or not valid for its kind."""


@dataclass(frozen=True)
class Rule:
    """One ignore pattern, ready to match leases.

    ``pattern`` is the text the user wrote (without a kind prefix); :meth:`describe` is how
    reports name the rule.
    """

    kind: str
    pattern: str
    glob: str
    module_glob: str | None = None

    def describe(self) -> str:
        """``kind pattern``, as shown next to an ignored lease."""
        return f"{self.kind} {self.pattern}"

    def matches(self, lease: Lease, rootdir: str | None = None) -> bool:
        """Whether *lease* falls under this rule; file paths are taken relative to *rootdir*."""
        if self.kind == "origin":
            return fnmatch.fnmatchcase(lease.origin.lower(), self.glob)
        if self.module_glob is not None and _module_matches(lease.site.module, self.module_glob):
            return True
        if self.kind == "module":
            return False
        return _file_matches(lease.site.filename, self.glob, rootdir)


def parse_rule(text: str, kind: str | None = None) -> Rule:
    """Parse one pattern; *kind* forces ``origin``, ``module``, ``file`` or ``site``.

    Without *kind*, an explicit prefix or the shape of the pattern decides (see the module
    docstring). Raises :class:`PatternError` with a message fit for the user.
    """
    text = text.strip()
    if not text:
        raise PatternError("empty pattern")
    if kind is None:
        match = _PREFIX.match(text)
        if match:
            kind = match.group(1).lower()
            if kind not in KINDS:
                raise PatternError(f"unknown kind {match.group(1)!r} in {text!r}")
            text = match.group(2).strip()
            if not text:
                raise PatternError(f"empty {kind} pattern")
        elif "://" in text:
            kind = "origin"
        elif "/" in text or "\\" in text or text.endswith(".py"):
            kind = "file"
        else:
            kind = "module"
    if kind == "origin":
        return Rule("origin", text, _origin_glob(text))
    if kind == "module":
        if not _MODULE.match(text):
            raise PatternError(f"{text!r} is not a dotted module name pattern")
        return Rule("module", text, "", _module_glob(text))
    if kind == "file":
        return Rule("file", text, _file_glob(text))
    if kind == "site":
        module = _module_glob(text) if _MODULE.match(text) else None
        return Rule("site", text, _file_glob(text), module)
    raise PatternError(f"unknown kind {kind!r}")  # pragma: no cover - callers pass a kind


def _origin_glob(text: str) -> str:
    scheme, sep, rest = text.partition("://")
    rest = rest.rstrip("/")
    if not sep or not _SCHEME.match(scheme) or not rest or any(c.isspace() for c in text):
        raise PatternError(f"{text!r} is not an origin pattern: write scheme://host[:port]")
    if "/" in rest:
        raise PatternError(f"{text!r}: an origin pattern is scheme://host[:port], without a path")
    # The port follows the last ":" after the host; an IPv6 host is in brackets.
    after_host = rest[rest.rfind("]") + 1 :]
    if ":" in after_host:
        host, _, port = rest.rpartition(":")
        if not host or not _PORT.match(port):
            raise PatternError(f"{text!r}: the port must be digits, * or ?")
    else:
        rest += ":*"
    # Brackets are literal here (IPv6 hosts); fnmatch would read them as a character set.
    escaped = "".join({"[": "[[]", "]": "[]]"}.get(c, c) for c in rest)
    return f"{scheme}://{escaped}".lower()


def _module_glob(text: str) -> str:
    return text[:-2] if text.endswith(".*") and len(text) > 2 else text


def _module_matches(module: str, glob: str) -> bool:
    return fnmatch.fnmatchcase(module, glob) or fnmatch.fnmatchcase(module, glob + ".*")


def _file_glob(text: str) -> str:
    glob = text.replace("\\", "/")
    while glob.startswith("./"):
        glob = glob[2:]
    if glob.endswith("/"):
        glob += "*"
    return glob


def _file_matches(filename: str, glob: str, rootdir: str | None) -> bool:
    candidates = [filename.replace(os.sep, "/")]
    if rootdir:
        try:
            rel = os.path.relpath(filename, rootdir)
        except ValueError:  # another drive on Windows
            rel = os.pardir
        if not rel.startswith(os.pardir):
            candidates.append(rel.replace(os.sep, "/"))
    return any(fnmatch.fnmatch(path, glob) for path in candidates)
