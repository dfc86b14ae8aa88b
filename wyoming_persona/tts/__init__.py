"""Piper text-to-speech server that speaks in each persona's voice."""
