"""The on-device runner: one process runs one job spec and leaves result.json (see CONTRACT.md)."""
