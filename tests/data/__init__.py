"""Tests of the `prepare` stage (sobesednik.data)."""
