"""The LLM calls an app makes, measured at its HTTP client and read by the shared LLM core (``llm/``)."""
