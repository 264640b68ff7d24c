"""The orchestrator's HTTP API (FastAPI): jobs, runs, images, devices, models, artifacts."""
