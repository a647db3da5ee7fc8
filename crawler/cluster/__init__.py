"""Cluster: the frontier service, a worker's remote view of it, and what workers share through Redis."""
