"""LLM side: recognising LLM traffic, parsing it as it streams, GenAI metrics, the span processor."""
