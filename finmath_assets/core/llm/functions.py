"""Retrieval of finance functions for program-of-thought ("retrieve code, not prose").

The library is :mod:`finmath_assets.core.finance`. Each function is embedded once, from its
name and docstring, with the same MiniLM embedder as the questions; a question (its text,
without the tables) is matched by cosine. The ``count`` most similar functions at or above
``min_similarity`` are *offered*: the prompt shows their signature and docstring (not the
body, which costs prompt tokens), and :func:`preamble` puts their full source in front of
the model's program when it runs, so a call resolves. A program that defines a function of
the same name overrides the library's (its definition comes later).

The model sees each function under a ``calc_`` name (``calc_bond_price``): with the bare name it
writes ``bond_price = bond_price(...)`` inside ``solution()``, which Python rejects
(UnboundLocalError: the assignment makes the name local). Measurements: docs/llm.md.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from finmath_assets.core.finance import FUNCTIONS
from finmath_assets.core.llm.retrieval import QueryEmbedder, cosine_scores, unit_rows

OFFERED_PREFIX = "calc_"  # the name a program calls; see the module docstring
FUNCTIONS_INTRO = (
    "These functions are already defined; call them where they fit, do not define them again:"
)


@dataclass(frozen=True)
class LibraryFunction:
    name: str  # as offered: OFFERED_PREFIX + the library's name
    source: str  # the whole definition under that name, self-contained (math only)
    header: str  # signature and docstring: what the prompt shows
    description: str  # what the retriever embeds

    @classmethod
    def of(cls, function: Callable[..., float]) -> LibraryFunction:
        own = function.__name__
        source = textwrap.dedent(inspect.getsource(function))
        if not source.startswith(f"def {own}("):
            raise ValueError(f"{own} must be a plain top-level function")
        source = f"def {OFFERED_PREFIX}{own}(" + source[len(f"def {own}(") :]
        node = ast.parse(source).body[0]
        docstring = ast.get_docstring(node) if isinstance(node, ast.FunctionDef) else None
        if not isinstance(node, ast.FunctionDef) or docstring is None:
            raise ValueError(f"{own} needs a docstring: the retriever embeds it")
        docstring_end = node.body[0].end_lineno or 1
        header = "\n".join(source.splitlines()[:docstring_end])
        description = f"{own.replace('_', ' ')}: {' '.join(docstring.split())}"
        return cls(node.name, source.rstrip() + "\n", header, description)


LIBRARY: tuple[LibraryFunction, ...] = tuple(LibraryFunction.of(f) for f in FUNCTIONS)


@dataclass(frozen=True)
class Offered:
    function: LibraryFunction
    similarity: float  # cosine between the question and the function's description


class FunctionIndex:
    """The library's functions and their unit vectors."""

    def __init__(
        self, functions: Sequence[LibraryFunction], vectors: np.ndarray, model_id: str
    ) -> None:
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.shape[0] != len(functions):
            raise ValueError(f"need one vector per function: {len(functions)}, {vectors.shape}")
        self.functions = tuple(functions)
        self.vectors = unit_rows(vectors)
        self.model_id = model_id

    @classmethod
    def build(
        cls, embedder: QueryEmbedder, functions: Sequence[LibraryFunction] = LIBRARY
    ) -> FunctionIndex:
        """Embed every description, one call each (the service's embedder is tuned for single
        texts; there are a few dozen)."""
        vectors = [embedder.encode([f.description])[0] for f in functions]
        return cls(functions, np.array(vectors).reshape(len(functions), -1), embedder.model_id)

    def search(self, query: np.ndarray, count: int, min_similarity: float) -> list[Offered]:
        """The ``count`` most similar functions with a cosine of at least ``min_similarity``,
        most similar first (ties: library order)."""
        if count < 0:
            raise ValueError(f"count must be 0 or more, got {count}")
        if count == 0 or not self.functions:
            return []
        scores = cosine_scores(self.vectors, query)
        order = np.argsort(-scores, kind="stable")[:count]
        kept = [i for i in order if scores[i] >= min_similarity]
        return [Offered(self.functions[i], float(scores[i])) for i in kept]

    def for_question(
        self, question: str, embedder: QueryEmbedder, count: int, min_similarity: float
    ) -> list[Offered]:
        """Embed the question text (tables left out: they are numbers, not the method) and
        :meth:`search`."""
        if count == 0:
            return []
        if embedder.model_id != self.model_id:
            raise ValueError(
                f"the embedder is {embedder.model_id!r} but the function index was built with "
                f"{self.model_id!r}"
            )
        return self.search(embedder.encode([question.strip()])[0], count, min_similarity)


def functions_block(offered: Sequence[Offered]) -> str:
    """What the prompt shows after the question ("" when nothing is offered)."""
    if not offered:
        return ""
    headers = "\n\n".join(o.function.header for o in offered)
    return f"{FUNCTIONS_INTRO}\n```python\n{headers}\n```"


def preamble(offered: Sequence[Offered]) -> str:
    """The source run in front of the model's program ("" when nothing is offered)."""
    if not offered:
        return ""
    return "import math\n\n\n" + "\n\n".join(o.function.source for o in offered) + "\n\n"


@dataclass(frozen=True)
class FunctionRetrieval:
    """How many library functions to offer a question, and how similar they must be."""

    index: FunctionIndex
    count: int = 2
    min_similarity: float = 0.45

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ValueError(f"count must be 0 or more, got {self.count}")

    @classmethod
    def build(
        cls, embedder: QueryEmbedder, count: int, min_similarity: float
    ) -> FunctionRetrieval | None:
        """The library indexed with ``embedder`` (None when ``count`` is 0: nothing offered)."""
        if count == 0:
            return None
        return cls(FunctionIndex.build(embedder), count, min_similarity)

    def offer(self, question: str, embedder: QueryEmbedder) -> list[Offered]:
        return self.index.for_question(question, embedder, self.count, self.min_similarity)
