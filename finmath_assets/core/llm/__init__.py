"""LLM financial question answering: program-of-thought (the model writes ``def solution():``,
the sandbox runs it), the FinanceMath paper's scoring, retrieval of solved examples."""
