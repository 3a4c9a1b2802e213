"""Checkpoint following and the sidecar evaluator (private; public names are re-exported from
tickwork). The route of one checkpoint through these modules is in docs/design.md."""
