"""Calls to the Anthropic API with our own retry policy, deadlines and body parsing.

The SDK client is built with ``max_retries=0`` so that every HTTP request is made here and can
be counted: a call is tried once plus up to ``max_retries`` times on 408/409/429/5xx (529
``overloaded_error`` included), timeouts, dropped connections and 2xx replies whose body is not a
usable API object (HTML, truncated JSON, ``content: null``). The delay is the server's
``retry-after-ms``/``retry-after`` when it can be read, otherwise exponential backoff with jitter
(``base * 2**attempt``, uniformly jittered between half and full); either is capped at
``max_delay`` (``backoff_max_s``), so the server never sets a longer wait.

Each request has a wall-clock deadline (``timeout_s``, from sending to the last byte), and a job
may have one too (``job_timeout_s``): no wait or request runs past it. Message bodies are parsed
here, not by the SDK, so that duplicate JSON keys are seen (they are marked under
``DUPLICATE_KEYS`` for the response validation to reject). The API key is read by the SDK from
``ANTHROPIC_API_KEY``; it is never passed around here.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import anthropic
import httpx2

RETRYABLE_STATUS = frozenset({408, 409, 429})
DUPLICATE_KEYS = "__duplicate_keys__"
Result = TypeVar("Result")


class MalformedResponse(Exception):
    """A 2xx reply whose body is not the API object it should be (retryable)."""


class RequestDeadlineExceeded(Exception):
    """One request ran past its wall-clock deadline (retryable)."""


class JobDeadlineExceeded(RuntimeError):
    """The job's wall-clock bound is reached; no further request or wait is made."""


RETRYABLE_ERRORS = (
    anthropic.APIConnectionError,
    anthropic.APIStatusError,
    httpx2.TransportError,
    MalformedResponse,
    RequestDeadlineExceeded,
)


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


def _seconds(text: str) -> float | None:
    """A non-negative number of seconds (``inf`` kept; NaN and junk are None)."""
    try:
        value = float(text)
    except ValueError:
        return None
    return None if math.isnan(value) else max(0.0, value)


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """The server's requested delay from ``retry-after-ms`` or ``retry-after`` (seconds or an
    HTTP date); None when absent or unreadable. The caller caps it."""
    if headers.get("retry-after-ms"):
        milliseconds = _seconds(headers["retry-after-ms"])
        if milliseconds is not None:
            return milliseconds / 1000
    value = (headers.get("retry-after") or "").strip()
    if not value:
        return None
    seconds = _seconds(value)
    if seconds is not None:
        return seconds
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return max(0.0, parsed.timestamp() - time.time())


def is_retryable(error: BaseException) -> bool:
    if isinstance(error, anthropic.APIStatusError):
        return error.status_code in RETRYABLE_STATUS or error.status_code >= 500
    return isinstance(error, RETRYABLE_ERRORS)


def redact(text: str, environment: Mapping[str, str] = os.environ) -> str:
    """``text`` with the API key replaced, should a server have echoed it back."""
    key = environment.get("ANTHROPIC_API_KEY", "").strip()
    return text.replace(key, "[redacted]") if len(key) >= 8 else text


def describe(error: BaseException) -> str:
    """A log line for a failed try; never includes request headers or the key."""
    if isinstance(error, anthropic.APIStatusError):
        body = error.body if isinstance(error.body, dict) else {}
        kind = body.get("error", {}).get("type", "") if isinstance(body.get("error"), dict) else ""
        return redact(f"HTTP {error.status_code} {kind}".strip())
    return redact(f"{type(error).__name__}: {str(error)[:300]}")


def _object_marking_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose repeated keys are listed under ``DUPLICATE_KEYS`` (the last value is
    kept, as ``json`` does, but never silently)."""
    result: dict[str, Any] = {}
    repeated = []
    for key, value in pairs:
        if key in result:
            repeated.append(key)
        result[key] = value
    if repeated:
        result[DUPLICATE_KEYS] = sorted(set(repeated))
    return result


def loads_marking_duplicates(text: str | bytes) -> Any:
    """``json.loads`` that marks repeated keys (see :func:`_object_marking_duplicates`)."""
    return json.loads(text, object_pairs_hook=_object_marking_duplicates)


def parse_message_body(body: bytes) -> dict[str, Any]:
    """A Messages API reply body as a dict; :class:`MalformedResponse` when it is not UTF-8
    JSON, not an object, or its ``content`` is not a list of typed blocks."""
    try:
        message = loads_marking_duplicates(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MalformedResponse(f"the {len(body)}-byte reply body is not JSON ({error})") from None
    if not isinstance(message, dict):
        raise MalformedResponse(f"the reply body is a {type(message).__name__}, not an object")
    content = message.get("content")
    if not isinstance(content, list) or not all(
        isinstance(block, dict) and isinstance(block.get("type"), str) for block in content
    ):
        raise MalformedResponse(f"the reply's content is a {type(content).__name__}, not blocks")
    return message


def run_with_deadline(function: Callable[[], Result], seconds: float) -> Result:
    """``function()`` in a daemon thread; :class:`RequestDeadlineExceeded` when it has not
    returned after ``seconds`` (the thread is abandoned; it ends with the process)."""
    outcome: dict[str, Any] = {}
    finished = threading.Event()

    def target() -> None:
        try:
            outcome["value"] = function()
        except BaseException as error:  # noqa: BLE001 - re-raised in the caller's thread
            outcome["error"] = error
        finally:
            finished.set()

    threading.Thread(target=target, daemon=True, name="anthropic-request").start()
    if not finished.wait(seconds):
        raise RequestDeadlineExceeded(f"no complete reply within {seconds:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def check_api_key(environment: Mapping[str, str] = os.environ) -> None:
    """Fail at start-up when ``ANTHROPIC_API_KEY`` is unset or blank (every job would fail)."""
    if not environment.get("ANTHROPIC_API_KEY", "").strip():
        raise ValueError(
            "ANTHROPIC_API_KEY is empty: export the key (it is read from the environment only), "
            "or use labels.source: dataset without labels.agreement"
        )


class Api:
    """An Anthropic client plus retry policy and deadlines; counts the HTTP requests it makes."""

    def __init__(
        self,
        policy: RetryPolicy,
        timeout_s: float = 600.0,
        client: anthropic.Anthropic | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        log: logging.Logger | None = None,
        job_timeout_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client or anthropic.Anthropic(max_retries=0, timeout=timeout_s)
        self.policy = policy
        self.timeout_s = timeout_s
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.log = log or logging.getLogger("anchorflow.labels")
        self.clock = clock
        self.job_deadline = None if job_timeout_s is None else clock() + job_timeout_s
        self.n_requests = 0
        self.delays: list[float] = []

    def remaining_s(self) -> float:
        """Seconds left before the job deadline (infinite without one)."""
        return math.inf if self.job_deadline is None else self.job_deadline - self.clock()

    def _check_deadline(self, what: str) -> float:
        remaining = self.remaining_s()
        if remaining <= 0:
            raise JobDeadlineExceeded(f"{what}: the job's wall-clock bound (job_timeout_s) is up")
        return remaining

    def call(self, send: Callable[[], Result], what: str) -> Result:
        """Run ``send`` (one HTTP request, body read) with retries; re-raise after the last try.

        The request is cut off at ``timeout_s`` or at the job deadline, whichever comes first.
        """
        attempt = 0
        while True:
            remaining = self._check_deadline(what)
            self.n_requests += 1
            try:
                return run_with_deadline(send, min(self.timeout_s, remaining))
            except RETRYABLE_ERRORS as error:
                if not is_retryable(error) or attempt == self.policy.max_retries:
                    self.log.error(
                        "%s failed for good after %d tries: %s", what, attempt + 1, describe(error)
                    )
                    raise
                headers = (
                    error.response.headers if isinstance(error, anthropic.APIStatusError) else {}
                )
                server_delay = retry_after_s(headers)
                delay = min(
                    self.policy.max_delay_s,
                    server_delay
                    if server_delay is not None
                    else self.policy.backoff(attempt, self.rng),
                )
                if delay >= self.remaining_s():
                    raise JobDeadlineExceeded(
                        f"{what}: {describe(error)}; the next try ({delay:.3g} s away) would pass "
                        "the job's wall-clock bound (job_timeout_s)"
                    ) from error
                self.log.warning(
                    "%s: %s; retry %d in %.3g s", what, describe(error), attempt + 1, delay
                )
                self.delays.append(delay)
                self.sleep(delay)
                attempt += 1

    def create_message(self, request: Mapping[str, Any], what: str) -> dict[str, Any]:
        """``messages.create`` with retries; the reply parsed from its raw body (duplicate keys
        marked), as a plain dict."""

        def send() -> dict[str, Any]:
            raw = self.client.messages.with_raw_response.create(**request)
            return parse_message_body(raw.read())

        return self.call(send, what)
