"""Output: the record log, stats files and the progress line."""
