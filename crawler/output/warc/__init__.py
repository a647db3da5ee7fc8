"""WARC output (ISO 28500): every HTTP exchange of a crawl, archived beside its record log."""

from crawler.output.warc.archive import WarcArchive
from crawler.output.warc.files import WARC_DIR, remove_all, repair_orphans

__all__ = ["WARC_DIR", "WarcArchive", "remove_all", "repair_orphans"]
