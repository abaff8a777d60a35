"""The mock upstreams' dependencies come with the extra ``pytest-connleak[upstreams]``.

The checker needs none of them, so a suite that pins an older Werkzeug (Flask 2.x) installs
pytest-connleak without an upgrade; only the mock upstreams ask for them, by name.
"""

from __future__ import annotations

import importlib

#: Module name -> the distribution that provides it.
DISTRIBUTIONS = {"pytest_httpserver": "pytest-httpserver", "werkzeug": "werkzeug"}


def missing(modules: tuple[str, ...]) -> list[str]:
    """The distributions of *modules* that cannot be imported."""
    absent = []
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:
            absent.append(DISTRIBUTIONS[module])
    return absent


def missing_message(what: str, absent: list[str]) -> str:
    # The packages, not the extra's index form: pytest-connleak is not on an index yet.
    return (
        f"{what} needs {' and '.join(absent)}: pip install {' '.join(absent)} "
        "(the 'upstreams' extra of pytest-connleak)"
    )


def require(what: str, modules: tuple[str, ...]) -> None:
    """Raise ``ModuleNotFoundError`` naming the extra if *what* cannot import *modules*."""
    absent = missing(modules)
    if absent:
        raise ModuleNotFoundError(missing_message(what, absent), name=absent[0])
