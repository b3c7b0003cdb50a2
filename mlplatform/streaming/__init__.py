"""Streaming inference on Redis Streams: `mlplatform stream` (the scoring consumer), `mlplatform
stream-replay`, and the `streaming_health` monitoring asset (`mlplatform.streaming.health`).
Nothing is imported here: the settings are read by `profiles.py`, which the asset module imports."""
