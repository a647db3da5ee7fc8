"""The embedded frontier store (SQLite in the crawl's output folder)."""
