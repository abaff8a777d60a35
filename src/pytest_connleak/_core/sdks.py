"""What we know of the SDKs people call instead of an HTTP library.

An SDK (boto3, the OpenAI SDK, docker...) leases through urllib3, requests or httpx2, so
its frames sit between the user's call and the pool. Treated as library code
(:data:`SDK_PACKAGES`, extended by the ``leak_check_library_packages`` ini value), they
are skipped by the lease-site walk and a report names the user's line; the SDK whose
frame was nearest the user's (``Site.library``) picks the hint (:func:`sdk_hint`).

Some SDKs lose a connection slot on the path their own documentation recommends, and
only where that cannot run a pool dry: such a lease is a known SDK behaviour
(:func:`known_behaviour`), listed in the summary, never failing the test.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .ledger import Lease

__all__ = ["SDK_PACKAGES", "KnownBehaviour", "known_behaviour", "sdk_hint"]

SDK_PACKAGES = (
    "boto3",
    "botocore",
    "s3transfer",
    "aiobotocore",
    "openai",
    "anthropic",
    "elasticsearch",
    "elastic_transport",
    "opensearchpy",
    "kubernetes",
    "docker",
    "stripe",
    "slack_sdk",
    "twilio",
    "hvac",
    "googleapiclient",
    "azure",
)
"""Packages whose frames are never a lease site, built in; the ini adds the user's own."""

_BOTO_HINT = (
    "read the Body to the end (response['Body'].read()), or close it "
    "(response['Body'].close(), or `with response['Body']:`)"
)
_OPENAI_HINT = (
    "iterate the stream to the end, or close it (stream.close(), or "
    "`with client.chat.completions.create(..., stream=True) as stream:`)"
)
_ANTHROPIC_HINT = (
    "iterate the stream to the end, or close it (stream.close(), or "
    "`with client.messages.stream(...) as stream:`)"
)
_DOCKER_HINT = (
    "consume the generator that stream=True returned to its end (docker's documentation "
    "asks for it), or do not stream"
)

_HINTS = {
    "boto3": _BOTO_HINT,
    "botocore": _BOTO_HINT,
    "openai": _OPENAI_HINT,
    "anthropic": _ANTHROPIC_HINT,
    "docker": _DOCKER_HINT,
}


def sdk_hint(lease: Lease) -> str | None:
    """The fix to suggest when *lease* was taken through a known SDK, else ``None``."""
    return _HINTS.get(lease.site.library)


class KnownBehaviour:
    """A way an SDK loses a slot that is not the user's leak.

    It applies to a lease taken through one of ``libraries`` (``Site.library``) whose
    adapter saw ``state`` happen to it, from a pool that never blocks (so the lost slot
    cannot make a later request wait). ``text`` is what the summary says.
    """

    # Not a frozen dataclass: this module loads with the adapters at every checked run's
    # start-up, and generating a dataclass's methods costs about 0.5 ms.
    __slots__ = ("libraries", "state", "text")

    libraries: tuple[str, ...]
    state: str
    text: str

    def __init__(self, libraries: tuple[str, ...], state: str, text: str) -> None:
        _set = object.__setattr__
        _set(self, "libraries", libraries)
        _set(self, "state", state)
        _set(self, "text", text)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r}")

    def __repr__(self) -> str:
        return (
            f"KnownBehaviour(libraries={self.libraries!r}, state={self.state!r}, "
            f"text={self.text!r})"
        )

    def explains(self, lease: Lease) -> bool:
        """Whether this behaviour, and not the user, left *lease* open."""
        return (
            lease.state == self.state
            and lease.site.library in self.libraries
            and not lease.pool.block
        )


KNOWN_BEHAVIOURS = (
    KnownBehaviour(
        ("boto3", "botocore"),
        "closed",
        "botocore's StreamingBody.close() closes the socket without returning the "
        "connection (botocore issue 1370); its pools never block",
    ),
)


def known_behaviour(lease: Lease) -> str | None:
    """What known SDK behaviour left *lease* open, or ``None`` when it is a leak."""
    for behaviour in KNOWN_BEHAVIOURS:
        if behaviour.explains(lease):
            return behaviour.text
    return None
