"""One client for OpenAI-compatible chat endpoints (vLLM, llama.cpp's ``llama-server``,
Ollama's ``/v1``, OpenAI), on the ``openai`` SDK.

Deterministic by default and bounded: temperature 0 (a caller sampling for self-consistency
passes a temperature and a seed), ``max_tokens``, a per-attempt timeout and a number of
retries (the SDK retries connection errors, timeouts, 408/409/429 and 5xx with exponential
backoff, so one call may take up to ``(max_retries + 1) * timeout_seconds`` plus the backoff).
Every failure to get a completion becomes one :class:`LLMError` naming the endpoint and model.

Assistant prefill: with ``prefill``, the request ends with an assistant message holding it, and
the returned ``text`` is ``prefill + completion``. Servers differ in what they do with it:

* ``llama-server`` continues a final assistant message by default (since llama.cpp PR #13174,
  2025; ``--no-prefill-assistant`` turns that off).
* vLLM continues it only when the request says ``continue_final_message: true`` and
  ``add_generation_prompt: false``: construct the client with ``continue_final_message=True``
  (other servers may reject those unknown fields, OpenAI does).
* llama-cpp-python's ``llama_cpp.server`` closes the final assistant message and opens a new
  turn (measured here, 0.3.36): ``prefill_mode="chatml"`` sends the ChatML text of the
  conversation, the assistant turn left open, to ``/v1/completions`` instead (Qwen's template;
  ``FINMATH_LLM_PREFILL_MODE=chatml``, which ``make llm-local`` prints).
* OpenAI's API (and servers that close the assistant turn) start a new answer instead. The model
  then usually writes the whole program again, fence included; when the completion itself opens
  with a code fence or ``def solution`` the prefill is *not* put in front of it
  (``Completion.prefill_used`` is False), so the text stays one well-formed program.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

# The SDK is imported where a client is made or called, not here: importing it takes about a
# second, which every Dagster run worker and code server loading the definitions would pay.
if TYPE_CHECKING:
    from openai import Omit
    from openai.types.chat import (
        ChatCompletionAssistantMessageParam,
        ChatCompletionMessageParam,
        ChatCompletionSystemMessageParam,
        ChatCompletionUserMessageParam,
    )

ErrorKind = Literal["connection", "timeout", "http", "bad_response"]
VLLM_CONTINUE_FINAL_MESSAGE: dict[str, bool] = {
    "continue_final_message": True,
    "add_generation_prompt": False,
}


class LLMError(RuntimeError):
    """No usable completion: the endpoint is unreachable, timed out, answered an HTTP error, or
    sent a body that is not a chat completion. ``response`` keeps what the server sent."""

    def __init__(
        self,
        message: str,
        *,
        kind: ErrorKind,
        base_url: str,
        model: str,
        status_code: int | None = None,
        response: Any = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.base_url = base_url
        self.model = model
        self.status_code = status_code
        self.response = response


@dataclass(frozen=True)
class Completion:
    text: str  # the answer: prefill + completion when the prefill was used
    completion: str  # what the model generated
    prefill_used: bool
    raw_response: dict[str, Any]  # the JSON body the server sent, as is
    latency_seconds: float  # the whole call, retries included
    prompt_tokens: int | None
    completion_tokens: int | None
    finish_reason: str | None  # "stop", "length" (hit max_tokens), ...
    model: str  # as the server reports it (else as requested)


PrefillMode = Literal["chat", "vllm", "chatml"]
PREFILL_MODES: tuple[str, ...] = ("chat", "vllm", "chatml")
# Qwen2.5's default system prompt, which its chat template adds when a conversation has none
QWEN_DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."


def chatml_prompt(messages: Sequence[Mapping[str, str]]) -> str:
    """The ChatML text (Qwen's template) of ``messages``; a final assistant message is left open
    (no ``<|im_end|>``) so that a completions endpoint continues it."""
    turns = [dict(m) for m in messages]
    if not turns or turns[0]["role"] != "system":
        turns.insert(0, {"role": "system", "content": QWEN_DEFAULT_SYSTEM})
    parts = []
    for index, turn in enumerate(turns):
        if index == len(turns) - 1 and turn["role"] == "assistant":
            parts.append(f"<|im_start|>assistant\n{turn['content']}")
        else:
            parts.append(f"<|im_start|>{turn['role']}\n{turn['content']}<|im_end|>\n")
    if turns[-1]["role"] != "assistant":
        parts.append("<|im_start|>assistant\n")
    return "".join(parts)


def _restarts_answer(completion: str) -> bool:
    """True when the model ignored the prefill and began a new answer of its own."""
    head = completion.lstrip()
    return head.startswith("```") or head.startswith("def solution")


def _chat_message(message: Mapping[str, str]) -> ChatCompletionMessageParam:
    """``message`` as the SDK's typed chat message (the roles the prompts use)."""
    role, content = message["role"], message["content"]
    if role == "system":
        system: ChatCompletionSystemMessageParam = {"role": "system", "content": content}
        return system
    if role == "user":
        user: ChatCompletionUserMessageParam = {"role": "user", "content": content}
        return user
    if role == "assistant":
        assistant: ChatCompletionAssistantMessageParam = {"role": "assistant", "content": content}
        return assistant
    raise ValueError(f"unsupported chat message role {role!r} (system, user or assistant)")


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class LLMClientConfig:
    """Everything an :class:`LLMClient` needs to reach one endpoint and model. The application
    builds it from its own settings (``Settings.llm_client_config()``, or the Dagster
    ``LLMResource``); this module never reads them."""

    base_url: str
    model: str
    api_key: str = field(repr=False)  # a secret: kept out of reprs and logs
    max_tokens: int
    timeout_seconds: float
    max_retries: int
    prefill_mode: PrefillMode


class LLMClient:
    """A chat-completions client for one endpoint and model. Thread-safe (the SDK's client is);
    close it, or use it as a context manager, to release its connection pool."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str = "not-needed",
        max_tokens: int = 512,
        timeout_seconds: float = 120.0,
        max_retries: int = 2,
        continue_final_message: bool = False,
        prefill_mode: PrefillMode = "chat",
    ) -> None:
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be positive, got {max_tokens}")
        if timeout_seconds <= 0:
            raise ValueError(f"timeout_seconds must be positive, got {timeout_seconds}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be 0 or more, got {max_retries}")
        self.base_url = base_url
        self.model = model
        self.max_tokens = max_tokens
        self.timeout_seconds = timeout_seconds
        self.max_retries = max_retries
        if prefill_mode not in PREFILL_MODES:
            raise ValueError(f"prefill_mode must be one of {PREFILL_MODES}, got {prefill_mode!r}")
        self.continue_final_message = continue_final_message or prefill_mode == "vllm"
        self.prefill_mode = prefill_mode
        import openai

        self._client = openai.OpenAI(
            base_url=base_url,
            api_key=api_key,
            timeout=timeout_seconds,
            max_retries=max_retries,
        )

    @classmethod
    def from_config(cls, config: LLMClientConfig) -> LLMClient:
        return cls(
            config.base_url,
            config.model,
            api_key=config.api_key,
            max_tokens=config.max_tokens,
            timeout_seconds=config.timeout_seconds,
            max_retries=config.max_retries,
            prefill_mode=config.prefill_mode,
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> LLMClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _error(self, message: str, kind: ErrorKind, **extra: Any) -> LLMError:
        return LLMError(
            f"LLM endpoint {self.base_url} (model {self.model!r}): {message}",
            kind=kind,
            base_url=self.base_url,
            model=self.model,
            **extra,
        )

    def complete(
        self,
        messages: Sequence[Mapping[str, str]],
        *,
        prefill: str | None = None,
        temperature: float = 0.0,
        seed: int | None = None,
    ) -> Completion:
        """One completion (greedy at the default temperature 0; ``seed`` makes a sample at a
        higher temperature repeatable on servers that honour it). Raises :class:`LLMError`
        when none comes."""
        if temperature < 0:
            raise ValueError(f"temperature must be 0 or more, got {temperature}")
        sent: list[dict[str, str]] = [dict(message) for message in messages]
        if prefill:
            sent.append({"role": "assistant", "content": prefill})
        extra_body = (
            VLLM_CONTINUE_FINAL_MESSAGE if prefill and self.continue_final_message else None
        )
        import openai

        sent_seed = seed if seed is not None else openai.omit
        started = time.perf_counter()
        try:
            if prefill and self.prefill_mode == "chatml":
                # a true prefill on servers whose chat endpoint closes the final assistant
                # message (llama-cpp-python's): the ChatML text, left open, to /v1/completions
                body_text = self._create_text(
                    chatml_prompt(sent), temperature=temperature, seed=sent_seed
                )
            else:
                body_text = self._create_chat(
                    sent, extra_body, temperature=temperature, seed=sent_seed
                )
        except openai.APITimeoutError as exc:
            raise self._error(
                f"timed out after {self.timeout_seconds:g} s per attempt "
                f"({self.max_retries + 1} attempts)",
                "timeout",
            ) from exc
        except openai.APIConnectionError as exc:
            cause = exc.__cause__ or exc
            raise self._error(
                f"could not connect ({self.max_retries + 1} attempts): {cause}", "connection"
            ) from exc
        except openai.APIStatusError as exc:
            raise self._error(
                f"HTTP {exc.status_code}: {exc.message}",
                "http",
                status_code=exc.status_code,
                response=exc.body,
            ) from exc
        latency = time.perf_counter() - started
        return self._parse(body_text, latency, prefill)

    def _create_text(self, prompt: str, *, temperature: float, seed: int | Omit) -> str:
        """The body of one ``/v1/completions`` response (raises the SDK's errors)."""
        raw = self._client.completions.with_raw_response.create(
            model=self.model,
            prompt=prompt,
            temperature=temperature,
            seed=seed,
            max_tokens=self.max_tokens,
            stop=["<|im_end|>", "<|endoftext|>"],
        )
        return raw.http_response.text

    def _create_chat(
        self,
        messages: Sequence[Mapping[str, str]],
        extra_body: Mapping[str, bool] | None,
        *,
        temperature: float,
        seed: int | Omit,
    ) -> str:
        """The body of one ``/v1/chat/completions`` response (raises the SDK's errors)."""
        raw = self._client.chat.completions.with_raw_response.create(
            model=self.model,
            messages=[_chat_message(message) for message in messages],
            temperature=temperature,
            seed=seed,
            max_tokens=self.max_tokens,
            extra_body=extra_body,
        )
        return raw.http_response.text

    def _parse(self, body_text: str, latency: float, prefill: str | None) -> Completion:
        try:
            body = json.loads(body_text)
        except ValueError as exc:
            raise self._error(
                f"the response is not JSON: {body_text[:200]!r}", "bad_response", response=body_text
            ) from exc
        choices = body.get("choices") if isinstance(body, dict) else None
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise self._error(
                f"the response holds no choices: {body_text[:200]!r}",
                "bad_response",
                response=body,
            )
        choice = choices[0]
        message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
        content = message.get("content") if message else choice.get("text")  # chat | completions
        completion = content if isinstance(content, str) else ""
        prefill_used = bool(prefill) and not _restarts_answer(completion)
        usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
        finish = choice.get("finish_reason")
        return Completion(
            text=(prefill or "") + completion if prefill_used else completion,
            completion=completion,
            prefill_used=prefill_used,
            raw_response=body,
            latency_seconds=latency,
            prompt_tokens=_int_or_none(usage.get("prompt_tokens")),
            completion_tokens=_int_or_none(usage.get("completion_tokens")),
            finish_reason=finish if isinstance(finish, str) else None,
            model=body.get("model") if isinstance(body.get("model"), str) else self.model,
        )
