"""A simulated LLM upstream: deterministic tokens at a configurable latency and rate.

Deterministic on purpose: the tests compare the token sums the metrics report with what this
produced, so the same request always yields the same tokens.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass

WORDS = ("the", "model", "streams", "tokens", "to", "a", "client", "that", "reads", "them", "as", "they",
         "arrive", "and", "measures", "every", "one")


class UpstreamError(RuntimeError):
    """The simulated upstream failed (fault injection)."""


@dataclass
class SimulatedUpstream:
    first_token_seconds: float = 0.05
    tokens_per_second: float = 200.0
    fail_rate: float = 0.0

    @classmethod
    def from_env(cls) -> SimulatedUpstream:
        return cls(float(os.environ.get("DEMO_FIRST_TOKEN_MS", "50")) / 1000,
                   float(os.environ.get("DEMO_TOKENS_PER_SECOND", "200")),
                   float(os.environ.get("DEMO_FAIL_RATE", "0")))

    async def generate(self, prompt_tokens: int, max_tokens: int) -> AsyncIterator[str]:
        """Yield ``max_tokens`` tokens: the first after ``first_token_seconds``, then at the rate."""
        if self.fail_rate and random.random() < self.fail_rate:
            await asyncio.sleep(self.first_token_seconds)
            raise UpstreamError("simulated upstream failure")
        await asyncio.sleep(self.first_token_seconds)
        gap = 1.0 / self.tokens_per_second if self.tokens_per_second > 0 else 0.0
        for i in range(max_tokens):
            if i:
                await asyncio.sleep(gap)
            yield WORDS[(prompt_tokens + i) % len(WORDS)] + " "


def count_tokens(text: str) -> int:
    """The demo's tokenizer: whitespace-separated words."""
    return len(text.split())
