"""Slow-drift analysis across weeks (docs/DRIFT.md): daily aggregates, trend tests, findings."""
