"""The persona LLM service: a Wyoming handle server that answers in the active persona's voice."""
