"""The LLM endpoint used by llm_qa_eval (FINMATH_LLM_* settings, visible in the Dagster UI; the
API key is read from the settings when the client is built, never shown)."""

from __future__ import annotations

from typing import Literal

import dagster as dg

from finmath_assets.core.llm.client import LLMClient
from finmath_assets.settings import Settings


class LLMResource(dg.ConfigurableResource):
    base_url: str | None = None
    model: str = "qwen2.5-coder-1.5b-instruct"
    prompt: Literal["paper", "improved"] = "improved"
    few_shot: int = 2
    max_tokens: int = 512
    timeout_seconds: float = 120
    max_retries: int = 2
    prefill_mode: Literal["chat", "vllm", "chatml"] = "chat"

    @classmethod
    def from_settings(cls, settings: Settings) -> LLMResource:
        return cls(
            base_url=settings.llm_base_url,
            model=settings.llm_model,
            prompt=settings.llm_prompt,
            few_shot=settings.llm_few_shot,
            max_tokens=settings.llm_max_tokens,
            timeout_seconds=settings.llm_timeout_seconds,
            max_retries=settings.llm_max_retries,
            prefill_mode=settings.llm_prefill_mode,
        )

    @property
    def configured(self) -> bool:
        return bool(self.base_url)

    def client(self) -> LLMClient:
        if not self.base_url:
            raise dg.Failure(
                "no LLM endpoint configured: set FINMATH_LLM_BASE_URL (e.g. "
                "http://127.0.0.1:8080/v1 after `make llm-local`) and materialise llm_qa_eval again"
            )
        return LLMClient(
            self.base_url,
            self.model,
            api_key=Settings().llm_api_key_value,
            max_tokens=self.max_tokens,
            timeout_seconds=self.timeout_seconds,
            max_retries=self.max_retries,
            prefill_mode=self.prefill_mode,
        )
