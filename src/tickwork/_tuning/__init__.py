"""Steps-per-execution tuning (private; public names are re-exported from tickwork)."""
