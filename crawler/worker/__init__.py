"""Worker: the lease loop, one politeness slot per host, page analysis, commits."""
