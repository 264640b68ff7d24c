"""Browser tests' fixtures live in browser_support.py (a name no other test folder uses)."""

from browser_support import artifacts, browser, dashboard

__all__ = ["artifacts", "browser", "dashboard"]
