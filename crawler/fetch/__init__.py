"""Fetch: the network policy, HTTP with bounded decoding, robots.txt, and robots-gated page fetches."""
