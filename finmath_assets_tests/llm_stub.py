"""A scripted OpenAI-compatible chat server for tests (no model): ``POST /v1/chat/completions``
answers with the next scripted :class:`Reply`, ``GET /v1/models`` lists the one model, and every
request is recorded.

    with LLMStub([Reply(status=500), Reply("    return 1\\n```")]) as stub:
        client = LLMClient(stub.base_url, "stub-model")
        ...
        assert stub.chat_requests[-1].body["temperature"] == 0

It runs in a background thread on 127.0.0.1 with a free port. A slow reply waits on an event that
closing the stub sets, so a test never leaves a sleeping handler behind.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CHAT_PATH = "/v1/chat/completions"
TEXT_PATH = "/v1/completions"  # plain text completions (the ChatML prefill mode)
MODELS_PATH = "/v1/models"


@dataclass(frozen=True)
class Reply:
    """One scripted answer: ``content`` as the assistant message, or an HTTP error ``status``
    (>= 400), or ``raw`` bytes sent as is (a malformed body); after ``delay`` seconds."""

    content: str = ""
    status: int = 200
    delay: float = 0.0
    finish_reason: str = "stop"
    prompt_tokens: int = 11
    completion_tokens: int = 7
    raw: bytes | None = None


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any  # the parsed JSON body (None for GET)


ReplyScript = Reply | Callable[[dict[str, Any]], Reply]


@dataclass
class LLMStub:
    """Context manager: serve ``replies`` in order, one per chat request; when they run out,
    answer 500 with ``x-should-retry: false`` (the test then fails loudly, without retries)."""

    replies: Iterable[ReplyScript] = ()
    model: str = "stub-model"
    requests: list[Recorded] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._script = list(self.replies)
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None, "the stub is not running"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    @property
    def chat_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.path == CHAT_PATH]

    @property
    def text_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.path == TEXT_PATH]

    def _next_reply(self, body: dict[str, Any]) -> Reply | None:
        with self._lock:
            script = self._script.pop(0) if self._script else None
        if script is None or isinstance(script, Reply):
            return script
        return script(body)

    def __enter__(self) -> LLMStub:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return None

            def _record(self, body: Any) -> None:
                with stub._lock:
                    stub.requests.append(
                        Recorded(self.command, self.path, dict(self.headers.items()), body)
                    )

            def _send(self, status: int, payload: bytes, headers: dict[str, str] | None = None):
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                    pass

            def do_GET(self) -> None:
                self._record(None)
                if self.path.rstrip("/") != MODELS_PATH:
                    self._send(404, b'{"error": {"message": "not found"}}')
                    return
                models = {"object": "list", "data": [{"id": stub.model, "object": "model"}]}
                self._send(200, json.dumps(models).encode())

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw.decode("utf-8", "replace")
                self._record(body)
                if self.path not in (CHAT_PATH, TEXT_PATH) or not isinstance(body, dict):
                    self._send(404, b'{"error": {"message": "not found"}}')
                    return
                reply = stub._next_reply(body)
                if reply is None:
                    error = {"error": {"message": "stub script exhausted", "type": "stub"}}
                    self._send(500, json.dumps(error).encode(), {"x-should-retry": "false"})
                    return
                if reply.delay and stub._closing.wait(reply.delay):
                    return  # closing: drop the connection
                if reply.raw is not None:
                    self._send(reply.status, reply.raw)
                elif reply.status >= 400:
                    error = {"error": {"message": f"stub error {reply.status}", "type": "stub"}}
                    self._send(reply.status, json.dumps(error).encode())
                else:
                    answer = completion(body, reply)
                    if self.path == TEXT_PATH:  # text_completion: `text` instead of `message`
                        answer["object"] = "text_completion"
                        for choice in answer["choices"]:
                            choice["text"] = choice.pop("message")["content"]
                    self._send(200, json.dumps(answer).encode())

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._closing.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)


def completion(request: dict[str, Any], reply: Reply) -> dict[str, Any]:
    """A chat.completion body as vLLM or llama.cpp's server sends it."""
    return {
        "id": f"chatcmpl-stub-{time.monotonic_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model", ""),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply.content},
                "finish_reason": reply.finish_reason,
            }
        ],
        "usage": {
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
            "total_tokens": reply.prompt_tokens + reply.completion_tokens,
        },
    }
