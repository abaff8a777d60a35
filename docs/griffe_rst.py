"""A griffe extension for the API reference: our docstrings use reST roles, shown as code.

``:class:`~pytest_connleak.Lease``` becomes ```Lease```, and a paragraph ending in ``::``
(a reST literal block follows, which Markdown already shows as code) ends in ``:``.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:class|func|meth|attr|mod|data|exc|obj|const):`(~?)([^`]+)`")
_LITERAL = re.compile(r"(\S)::$", re.M)


def _role(match: re.Match[str]) -> str:
    short, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if short else target}`"


class RestRoles(griffe.Extension):
    """Rewrite reST roles and literal-block markers in every docstring."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            text = _ROLE.sub(_role, obj.docstring.value)
            obj.docstring.value = _LITERAL.sub(r"\1:", text)
