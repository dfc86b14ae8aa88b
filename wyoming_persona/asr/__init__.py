"""faster-whisper speech-to-text server with Silero trimming and speculative early decoding."""
