"""A chat helper as first written: it keeps a streamed reply it may never finish."""

from __future__ import annotations

from typing import Any

import openai

MESSAGES: list[Any] = [{"role": "user", "content": "Why do connection pools run dry?"}]


class Conversation:
    """Streams replies; the caller reads ``pending`` later, or not."""

    def __init__(self, client: openai.OpenAI) -> None:
        self.client = client
        self.pending: Any = None

    def ask(self) -> int:
        self.pending = self.client.chat.completions.create(
            model="test-model", messages=MESSAGES, stream=True
        )
        return int(self.pending.response.status_code)  # the stream is kept, never closed


def first_word(client: openai.OpenAI) -> str:
    for chunk in client.chat.completions.create(model="test-model", messages=MESSAGES, stream=True):
        return str(chunk.choices[0].delta.content)  # stops early; the stream is dropped
    return ""
