"""The chat helper as first written; with --leak-check the kept stream is caught."""

from __future__ import annotations

import openai
from service import Conversation, first_word

CONVERSATIONS: list[Conversation] = []  # a cache that outlives the test, as services keep


def test_ask(client: openai.OpenAI) -> None:
    conversation = Conversation(client)
    CONVERSATIONS.append(conversation)
    assert conversation.ask() == 200


def test_first_word(client: openai.OpenAI) -> None:
    # Not a leak: the stream is dropped at once, CPython frees it and the SDK closes it.
    assert first_word(client) == "Leaks"


def test_whole_reply(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="test-model", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream).endswith("streams.")


def test_not_streamed(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="test-model", messages=[{"role": "user", "content": "hi"}]
    )
    assert reply.choices[0].message.content == "Leaks hide in open streams."
