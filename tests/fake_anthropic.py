"""A fake Anthropic Messages API on 127.0.0.1 for the labelling tests.

It answers ``POST /v1/messages``, ``POST /v1/messages/batches``, ``GET
/v1/messages/batches/{id}`` and ``GET /v1/messages/batches/{id}/results`` (JSONL) with
``tool_use`` content built from known labels: it reads the chunks to label from the prompt,
finds the one catalogued trace whose problem and chunk texts appear under the same numbers, and
returns that trace's labels. A request whose chunks match no trace (or the wrong numbers) gets
HTTP 400, so a shifted index fails the test.

``fault(trace, seen, n_targets)`` decides per request which fault to inject: ``trace`` is the
catalogue position of the trace the chunks belong to, ``seen`` counts earlier requests of the
same window (same first user message) and ``n_targets`` is its number of chunks to label.
Faults: ``429`` (with ``retry-after``), ``529`` (``overloaded_error``), ``500``, ``drop``
(connection closed without a reply), ``malformed`` (text that is not JSON), ``missing`` (last
chunk left out), ``unknown_tag``, ``forward`` (a dependency on a later chunk), ``shifted``
(every label one chunk late), ``max_tokens`` (cut off). Hostile ones: ``retry-after=<value>``
(429 with that header, e.g. ``86400``, ``inf``, ``soon``), ``status=<code>`` (that error
status), ``echo_key`` (a 200 HTML page echoing the request headers), ``drip`` (a valid reply
dripped in pieces, ``drip_pause_s`` apart), ``html``, ``truncated_body`` and ``content_null``
(2xx bodies that are no message), ``usage_text`` (non-numeric token counts),
``conflicting_tools`` (a valid but wrong tool call before the right one), ``duplicate_key`` (a
chunk's key repeated in the raw JSON, the wrong entry last), ``zero_padded`` (a wrong ``"05"``
beside ``"5"``), ``float_deps`` (``depends_on: [3.0]``). Batches: ``GET /v1/messages/batches``
lists them newest first with their real creation times; ``results_drops`` results requests are
cut off mid-stream first; ``duplicated_results`` repeats every result with other labels. Every
request is counted per route in ``counts``.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from fake_anthropic_replies import (
    RETRY_AFTER_S,
    WRONG_ENTRY,
    Batch,
    CatalogTrace,
    FakeState,
    answer,
    encode_message,
    find_trace,
    first_user_text,
    target_numbers,
)


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _batch_json(batch: Batch, ended: bool, base_url: str) -> dict[str, Any]:
    n = len(batch.requests)
    return {
        "id": batch.id,
        "type": "message_batch",
        "processing_status": "ended" if ended else "in_progress",
        "request_counts": {
            "processing": 0 if ended else n,
            "succeeded": n if ended else 0,
            "errored": 0,
            "canceled": 0,
            "expired": 0,
        },
        "created_at": _iso(batch.created_at),
        "expires_at": _iso(batch.created_at + 86400),
        "ended_at": "2026-01-01T01:00:00Z" if ended else None,
        "archived_at": None,
        "cancel_initiated_at": None,
        "results_url": f"{base_url}/v1/messages/batches/{batch.id}/results" if ended else None,
    }


class FakeServer:
    """The fake API in a background thread; ``base_url`` is ``http://127.0.0.1:<port>``."""

    def __init__(self, catalog: list[CatalogTrace]) -> None:
        self.state = FakeState(catalog)
        handler = _handler(self.state, self)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def counts(self) -> Counter:
        return self.state.counts

    def total(self) -> int:
        return sum(self.state.counts.values())


def _handler(state: FakeState, server: FakeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return

        def _send(self, status: int, payload: Any, headers: Mapping[str, str] = {}) -> None:  # noqa: B006
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(status)
            jsonl = isinstance(payload, bytes)
            self.send_header("Content-Type", "application/x-jsonl" if jsonl else "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def _send_raw(self, status: int, data: bytes, content_type: str, length: int) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(length))
            self.end_headers()
            self.wfile.write(data)

        def _drip(self, data: bytes, pieces: int = 20) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            size = -(-len(data) // pieces)
            try:
                for start in range(0, len(data), size):
                    self.wfile.write(data[start : start + size])
                    self.wfile.flush()
                    time.sleep(state.drip_pause_s)
            except (BrokenPipeError, ConnectionResetError):
                return

        def _body(self) -> dict[str, Any]:
            length = int(self.headers.get("Content-Length", 0))
            return json.loads(self.rfile.read(length) or b"{}")

        def do_POST(self) -> None:  # noqa: N802
            body = self._body()
            if not (self.headers.get("x-api-key") or self.headers.get("authorization")):
                self._send(401, {"type": "error", "error": {"type": "authentication_error"}})
                return
            if self.path == "/v1/messages":
                self._messages(body)
            elif self.path == "/v1/messages/batches":
                with state.lock:
                    state.counts["batches.create"] += 1
                    batch = Batch(f"msgbatch_{len(state.batches) + 1:04d}", body["requests"])
                    state.batches[batch.id] = batch
                self._send(200, _batch_json(batch, False, server.base_url))
            else:
                self._send(404, {"type": "error", "error": {"type": "not_found_error"}})

        def _messages(self, body: dict[str, Any]) -> None:
            text = first_user_text(body)
            with state.lock:
                state.counts["messages"] += 1
                seen = state.seen[text]
                state.seen[text] += 1
            targets = target_numbers(text)
            position = find_trace(state, text, targets) if targets else None
            fault = state.fault(-1 if position is None else position, seen, len(targets))
            if fault == "drop":
                self.close_connection = True
                return
            if fault and fault.startswith("retry-after="):
                error = {"type": "rate_limit_error", "message": "slow down"}
                header = {"retry-after": fault.split("=", 1)[1]}
                self._send(429, {"type": "error", "error": error}, header)
            elif fault and fault.startswith("status="):
                status = int(fault.split("=", 1)[1])
                self._send(status, {"type": "error", "error": {"type": "invalid_request_error"}})
            elif fault == "html":
                page = b"<html><body>502 Bad Gateway</body></html>"
                self._send_raw(200, page, "text/html", len(page))
            elif fault == "echo_key":  # a broken proxy that echoes the request headers
                key = self.headers.get("x-api-key") or self.headers.get("authorization")
                echoed = f"key: {key} {dict(self.headers)}"
                page = f"<html>{echoed}</html>".encode()
                self._send_raw(200, page, "text/html", len(page))
            elif fault in ("truncated_body", "content_null", "usage_text", "drip"):
                status, message = answer(state, body, None)
                if fault == "content_null":
                    message["content"] = None
                if fault == "usage_text":
                    message["usage"] = {key: "lots" for key in message["usage"]}
                data = encode_message(message)
                if fault == "drip":
                    self._drip(data)
                elif fault == "truncated_body":
                    self._send_raw(
                        status, data[: len(data) // 2], "application/json", len(data) // 2
                    )
                else:
                    self._send_raw(status, data, "application/json", len(data))
            elif fault == "429":
                error = {"type": "rate_limit_error", "message": "slow down"}
                self._send(429, {"type": "error", "error": error}, {"retry-after": RETRY_AFTER_S})
            elif fault == "529":
                error = {"type": "overloaded_error", "message": "Overloaded"}
                self._send(529, {"type": "error", "error": error})
            elif fault == "500":
                error = {"type": "api_error", "message": "oops"}
                self._send(500, {"type": "error", "error": error})
            else:
                status, message = answer(state, body, fault)
                data = encode_message(message)
                self._send_raw(status, data, "application/json", len(data))

        def do_GET(self) -> None:  # noqa: N802
            if self.path.split("?")[0] == "/v1/messages/batches":
                with state.lock:
                    state.counts["batches.list"] += 1
                    newest_first = sorted(state.batches.values(), key=lambda b: -b.created_at)
                data = [
                    _batch_json(b, b.polls >= state.polls_to_end, server.base_url)
                    for b in newest_first
                ]
                listing = {"data": data, "has_more": False, "first_id": None, "last_id": None}
                if data:
                    listing |= {"first_id": data[0]["id"], "last_id": data[-1]["id"]}
                self._send(200, listing)
                return
            match = re.fullmatch(r"/v1/messages/batches/([\w-]+)(/results)?", self.path)
            batch = state.batches.get(match.group(1)) if match else None
            if batch is None:
                self._send(404, {"type": "error", "error": {"type": "not_found_error"}})
                return
            if match.group(2):
                with state.lock:
                    state.counts["batches.results"] += 1
                    drop = state.results_drops > 0
                    state.results_drops -= drop
                data = self._results(batch)
                if drop:  # headers promise the whole body; half of it comes, then the close
                    self.close_connection = True
                    self._send_raw(200, data[: len(data) // 2], "application/x-jsonl", len(data))
                    return
                self._send(200, data)
                return
            with state.lock:
                state.counts["batches.retrieve"] += 1
                batch.polls += 1
                ended = batch.polls >= state.polls_to_end
            self._send(200, _batch_json(batch, ended, server.base_url))

        def _results(self, batch: Batch) -> bytes:
            lines = []
            for request in batch.requests:
                if request["custom_id"] in state.batch_errors:
                    error = {"type": "error", "error": {"type": "api_error", "message": "failed"}}
                    result = {"type": "errored", "error": error}
                else:
                    status, message = answer(state, request["params"], None)
                    result = (
                        {"type": "succeeded", "message": message}
                        if status == 200
                        else {"type": "errored", "error": message}
                    )
                lines.append(json.dumps({"custom_id": request["custom_id"], "result": result}))
                if state.duplicated_results and status == 200:  # the same id, other labels
                    wrong = json.loads(json.dumps(result))
                    for block in wrong["message"]["content"]:
                        block["input"] = {key: WRONG_ENTRY for key in block["input"]}
                    lines.append(json.dumps({"custom_id": request["custom_id"], "result": wrong}))
            return ("\n".join(lines) + "\n").encode()

    return Handler
