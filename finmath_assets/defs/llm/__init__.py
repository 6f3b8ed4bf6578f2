"""The LLM path: the few-shot bank built from the FinanceMath graph (`finmath/solved_examples`)
and the evaluation of an OpenAI-compatible endpoint on the validation split (`llm/llm_qa_eval`)."""
