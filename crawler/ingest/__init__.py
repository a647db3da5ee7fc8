"""Ingest: normalize, scope (the one authority), trap rules and dedup of every URL entering the frontier."""
