"""`wyoming-persona talk`: one voice turn through running ASR, persona and TTS services."""
