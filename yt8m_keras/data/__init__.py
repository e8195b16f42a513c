"""Shared input pieces: shard reading and image decoding (a competition's streams live in its folder)."""
