"""Browser tests: Playwright driving Debian's Chromium against a live web process (webapp.serve)."""
