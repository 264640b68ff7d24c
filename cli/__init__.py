"""The hexfleet command line: typer commands, the HTTP client, terminal views, the embedded farm."""
