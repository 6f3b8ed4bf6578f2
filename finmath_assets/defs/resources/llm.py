"""The LLM endpoint used by llm_qa_eval (FINMATH_LLM_* settings, visible in the Dagster UI; the
API key comes from the settings as a secret, see ``secrets.py``, never shown)."""

# no `from __future__ import annotations`: Dagster must see the ResourceDependency type

from typing import Literal, Self

import dagster as dg

from finmath_assets.core.llm.answering import Sampling
from finmath_assets.core.llm.client import LLMClient, LLMClientConfig
from finmath_assets.core.llm.functions import FunctionRetrieval
from finmath_assets.core.llm.retrieval import QueryEmbedder
from finmath_assets.defs.resources.secrets import secret
from finmath_assets.settings import Settings


class LLMResource(dg.ConfigurableResource):
    base_url: str | None
    model: str
    prompt: Literal["paper", "improved"]
    few_shot: int
    max_tokens: int
    samples: int
    vote_agree: int
    temperature: float
    repair: bool
    functions: int
    function_min_similarity: float
    timeout_seconds: float
    max_retries: int
    prefill_mode: Literal["chat", "vllm", "chatml"]
    api_key: dg.ResourceDependency[str]

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        return cls(
            base_url=settings.llm_base_url,
            model=settings.llm_model,
            prompt=settings.llm_prompt,
            few_shot=settings.llm_few_shot,
            max_tokens=settings.llm_max_tokens,
            samples=settings.llm_samples,
            vote_agree=settings.llm_vote_agree,
            temperature=settings.llm_temperature,
            repair=settings.llm_repair,
            functions=settings.llm_functions,
            function_min_similarity=settings.llm_function_min_similarity,
            timeout_seconds=settings.llm_timeout_seconds,
            max_retries=settings.llm_max_retries,
            prefill_mode=settings.llm_prefill_mode,
            api_key=secret(
                settings.llm_api_key_value, "LLM API key (FINMATH_LLM_API_KEY): not shown"
            ),
        )

    @property
    def configured(self) -> bool:
        return bool(self.base_url)

    def sampling(self) -> Sampling:
        return Sampling(
            samples=self.samples,
            agree=self.vote_agree,
            temperature=self.temperature,
            repair=self.repair,
        )

    def function_retrieval(self, embedder: QueryEmbedder) -> FunctionRetrieval | None:
        """The library functions to offer (None: none), indexed with ``embedder``."""
        return FunctionRetrieval.build(embedder, self.functions, self.function_min_similarity)

    def client(self) -> LLMClient:
        if not self.base_url:
            raise dg.Failure(
                "no LLM endpoint configured: set FINMATH_LLM_BASE_URL (e.g. "
                "http://127.0.0.1:8080/v1 after `make llm-local`) and materialise llm_qa_eval again"
            )
        return LLMClient.from_config(
            LLMClientConfig(
                base_url=self.base_url,
                model=self.model,
                api_key=self.api_key,
                max_tokens=self.max_tokens,
                timeout_seconds=self.timeout_seconds,
                max_retries=self.max_retries,
                prefill_mode=self.prefill_mode,
            )
        )
