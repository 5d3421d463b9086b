"""Background work: ingest and its helpers, run by RQ workers or the CLI."""
