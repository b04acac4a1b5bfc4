"""Calls to the Anthropic API with our own retry policy.

The SDK client is built with ``max_retries=0`` so that every HTTP request is made here and can
be counted: a call is tried once plus up to ``max_retries`` times on 408/409/429/5xx (529
``overloaded_error`` included), timeouts and dropped connections. The delay is the server's
``retry-after-ms``/``retry-after`` when given, otherwise exponential backoff with jitter
(``base * 2**attempt``, uniformly jittered between half and full, capped at ``max_delay``).
The API key is read by the SDK from ``ANTHROPIC_API_KEY``; it is never passed around here.
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import anthropic

RETRYABLE_STATUS = frozenset({408, 409, 429})
Result = TypeVar("Result")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to wait between tries of one request."""

    max_retries: int = 8
    base_delay_s: float = 2.0
    max_delay_s: float = 120.0

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> RetryPolicy:
        return cls(
            max_retries=int(settings["max_retries"]),
            base_delay_s=float(settings["backoff_base_s"]),
            max_delay_s=float(settings["backoff_max_s"]),
        )

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Jittered exponential delay before retry number ``attempt + 1``."""
        ceiling = min(self.max_delay_s, self.base_delay_s * 2**attempt)
        return rng.uniform(ceiling / 2, ceiling)


def retry_after_s(error: anthropic.APIStatusError) -> float | None:
    """The server's requested delay from ``retry-after-ms`` or ``retry-after`` (seconds or date)."""
    headers = error.response.headers
    if headers.get("retry-after-ms"):
        try:
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def is_retryable(error: Exception) -> bool:
    if isinstance(error, anthropic.APIConnectionError):
        return True
    if isinstance(error, anthropic.APIStatusError):
        return error.status_code in RETRYABLE_STATUS or error.status_code >= 500
    return False


def describe(error: Exception) -> str:
    """A log line for a failed try; never includes request headers (the key)."""
    if isinstance(error, anthropic.APIStatusError):
        body = error.body if isinstance(error.body, dict) else {}
        kind = body.get("error", {}).get("type", "") if isinstance(body.get("error"), dict) else ""
        return f"HTTP {error.status_code} {kind}".strip()
    return f"{type(error).__name__}: {error}"


class Api:
    """An Anthropic client plus retry policy; counts the HTTP requests it makes."""

    def __init__(
        self,
        policy: RetryPolicy,
        timeout_s: float = 600.0,
        client: anthropic.Anthropic | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        log: logging.Logger | None = None,
    ) -> None:
        self.client = client or anthropic.Anthropic(max_retries=0, timeout=timeout_s)
        self.policy = policy
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.log = log or logging.getLogger("anchorflow.labels")
        self.n_requests = 0
        self.delays: list[float] = []

    def call(self, send: Callable[[], Result], what: str) -> Result:
        """Run ``send`` (one HTTP request) with retries; re-raise after the last try."""
        attempt = 0
        while True:
            self.n_requests += 1
            try:
                return send()
            except (anthropic.APIConnectionError, anthropic.APIStatusError) as error:
                if not is_retryable(error) or attempt == self.policy.max_retries:
                    self.log.error(
                        "%s failed for good after %d tries: %s", what, attempt + 1, describe(error)
                    )
                    raise
                server_delay = (
                    retry_after_s(error) if isinstance(error, anthropic.APIStatusError) else None
                )
                delay = (
                    server_delay
                    if server_delay is not None
                    else self.policy.backoff(attempt, self.rng)
                )
                self.log.warning(
                    "%s: %s; retry %d in %.3g s", what, describe(error), attempt + 1, delay
                )
                self.delays.append(delay)
                self.sleep(delay)
                attempt += 1

    def create_message(self, request: Mapping[str, Any], what: str) -> dict[str, Any]:
        """``messages.create`` with retries; the response as a plain dict."""
        message = self.call(lambda: self.client.messages.create(**request), what)
        return message.model_dump(mode="json")
