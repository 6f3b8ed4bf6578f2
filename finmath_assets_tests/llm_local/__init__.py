"""Tests against a real local LLM server (make test-llm); not part of the default test run."""
