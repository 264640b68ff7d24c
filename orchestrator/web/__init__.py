"""The dashboard: server-rendered pages under /ui (routes.py), their data (pages.py), logins."""
