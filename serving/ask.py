"""The logic behind ``POST /ask`` (the route is ``serving/routes/ask.py``): a question and its
tables answered by the configured LLM with program-of-thought
(``finmath_assets.core.llm.answering``: retrieval of solved examples, the model's program run in
the sandbox). The service reads the example bank from the exported
``processed/solved_examples.parquet`` (never the warehouse) and embeds with the embedder it
already holds for ``/predict``, so the vectors are comparable with the bank's.

Without an endpoint the route answers 503 and, when the bank is there, shows the most similar
solved example, labelled as such: it is never presented as an answer.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from finmath_assets.core.embeddings import Embedder
from finmath_assets.core.llm.answering import LLMAnswer, answer
from finmath_assets.core.llm.client import LLMClient
from finmath_assets.core.llm.functions import FunctionRetrieval
from finmath_assets.core.llm.retrieval import SOLVED_EXAMPLES_FILE, ExampleBank, ExampleBankError
from finmath_assets.core.sandbox import Limits
from finmath_assets.settings import Settings

log = logging.getLogger(__name__)


class NoEndpointError(RuntimeError):
    """No LLM endpoint is configured; ``detail`` is the 503 body."""

    def __init__(self, detail: dict[str, Any]) -> None:
        super().__init__(detail["message"])
        self.detail = detail


@dataclass
class Asker:
    settings: Settings
    embedder: Embedder  # the service's, the one /predict uses
    client: LLMClient | None
    bank: ExampleBank | None
    bank_error: str | None = None
    _functions: FunctionRetrieval | None = field(default=None, init=False, repr=False)
    _functions_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings, embedder: Embedder) -> Asker:
        bank, error = None, None
        try:
            bank = ExampleBank.read_parquet(settings.processed_dir / SOLVED_EXAMPLES_FILE)
            if bank.model_id != embedder.model_id:
                error = (
                    f"the example bank was embedded with {bank.model_id!r}, this service embeds "
                    f"with {embedder.model_id!r}: re-materialise solved_examples"
                )
                bank = None
        except ExampleBankError as exc:
            error = str(exc)
        if error:
            log.warning("/ask without retrieval: %s", error)
        client = (
            LLMClient.from_config(settings.llm_client_config()) if settings.llm_base_url else None
        )
        if client is None:
            log.warning("/ask answers 503: FINMATH_LLM_BASE_URL is not set")
        return cls(settings, embedder, client, bank, error)

    @property
    def functions(self) -> FunctionRetrieval | None:
        """The library functions to offer (improved prompt, FINMATH_LLM_FUNCTIONS > 0), indexed
        on the first question: a few dozen embeddings the service need not pay at start-up."""
        settings = self.settings
        if not settings.llm_functions or settings.llm_prompt != "improved":
            return None
        with self._functions_lock:
            if self._functions is None:
                self._functions = FunctionRetrieval.build(
                    self.embedder, settings.llm_functions, settings.llm_function_min_similarity
                )
            return self._functions

    @property
    def k(self) -> int:
        return self.settings.llm_few_shot if self.bank is not None else 0

    def ask(self, question: str, tables: list[str]) -> LLMAnswer:
        """Blocking (LLM call and sandbox): run it in a worker thread."""
        if self.client is None:
            raise NoEndpointError(self._unavailable(question, tables))
        variant = self.settings.llm_prompt
        improved = variant == "improved"
        functions = self.functions
        return answer(
            question,
            tables,
            client=self.client,
            prompt_variant=variant,
            bank=self.bank,
            embedder=self.embedder if improved and (self.k or functions) else None,
            k=self.k if improved else 0,
            limits=Limits(isolation=self.settings.sandbox_isolation),
            sampling=self.settings.llm_sampling(),
            functions=functions,
        )

    def _unavailable(self, question: str, tables: list[str]) -> dict[str, Any]:
        detail: dict[str, Any] = {
            "message": "no LLM endpoint is configured: set FINMATH_LLM_BASE_URL (and "
            "FINMATH_LLM_MODEL) to an OpenAI-compatible server, e.g. `make llm-local`",
        }
        if self.bank is not None:
            (nearest,) = self.bank.similar(question, tables, self.embedder, 1) or (None,)
            if nearest is not None:
                detail["most_similar_solved_example"] = {
                    "note": "a solved example similar to your question, for reference; it is "
                    "NOT an answer to your question",
                    "question_id": nearest.example.question_id,
                    "similarity": round(nearest.similarity, 4),
                    "question": nearest.example.question,
                    "python_solution": nearest.example.python_solution,
                }
        return detail

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
