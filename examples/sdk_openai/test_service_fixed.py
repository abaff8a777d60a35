"""The fixed helper: every test passes with --leak-check."""

from __future__ import annotations

import openai
from service_fixed import Conversation, first_word


def test_ask(client: openai.OpenAI) -> None:
    assert Conversation(client).ask() == "Leaks hide in open streams."


def test_first_word(client: openai.OpenAI) -> None:
    assert first_word(client) == "Leaks"
