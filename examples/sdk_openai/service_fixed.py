"""The fix: read the streamed reply to its end, or close it, inside the call."""

from __future__ import annotations

from typing import Any

import openai

MESSAGES: list[Any] = [{"role": "user", "content": "Why do connection pools run dry?"}]


class Conversation:
    def __init__(self, client: openai.OpenAI) -> None:
        self.client = client

    def ask(self) -> str:
        with self.client.chat.completions.create(
            model="test-model", messages=MESSAGES, stream=True
        ) as stream:
            return "".join(chunk.choices[0].delta.content or "" for chunk in stream)


def first_word(client: openai.OpenAI) -> str:
    with client.chat.completions.create(
        model="test-model", messages=MESSAGES, stream=True
    ) as stream:
        for chunk in stream:
            return str(chunk.choices[0].delta.content)
    return ""
