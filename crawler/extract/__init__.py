"""Extract: HTML decoding, fields and links with selectolax, SimHash near-duplicates."""
