"""Command-line errors are clear (exit 2, naming the flag, key or file and line) and lose nothing."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import page_key, read_records, run_crawler
from tests.testweb import Page, Site, TestWeb


def test_bad_config_key_names_the_key(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[politeness]\ndelay = 0.1\nconcurency = 4\n")
    proc = run_crawler("crawl", "http://a.test/", "-c", str(cfg), "-o", str(tmp_path / "o"))
    assert proc.returncode == 2
    assert "unknown key politeness.concurency" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_allow_domains_entry_names_the_key(tmp_path: Path) -> None:
    """Bad punycode or an empty label in `allow_domains` exits 2 naming the entry, not with a traceback."""
    for i, (bad, why) in enumerate([("xn--zz", "punycode"), ("docs..example.com", "empty label")]):
        cfg = tmp_path / f"bad{i}.toml"
        cfg.write_text(f'[crawl]\nallow_domains = ["ok.test", "{bad}"]\n')
        proc = run_crawler("crawl", "http://a.test/", "-c", str(cfg), "-o", str(tmp_path / f"o{i}"))
        assert proc.returncode == 2, proc.stderr
        assert "crawl.allow_domains[1]" in proc.stderr and why in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr


def test_bad_flag_values_name_the_flag(tmp_path: Path) -> None:
    for flag, value, expected in [
        ("--delay", "fast", "argument --delay: expected a number, got 'fast'"),
        ("--max-pages", "-3", "argument --max-pages: must be >= 0"),
        ("--resolve", "a.test", "argument --resolve: expected HOST=ADDRESS"),
        ("--resolve", "a.test=localhost", "argument --resolve: 'localhost' is not an IP address"),
    ]:
        proc = run_crawler("crawl", "http://a.test/", flag, value, "-o", str(tmp_path / "o"))
        assert proc.returncode == 2, (flag, proc.stderr)
        assert expected in proc.stderr, (flag, proc.stderr)


def test_missing_seed_file_and_empty_seed_list(tmp_path: Path) -> None:
    proc = run_crawler("crawl", "--seeds", str(tmp_path / "nope.txt"), "-o", str(tmp_path / "o"))
    assert proc.returncode == 2 and "seed file not found" in proc.stderr
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing here\n\n")
    proc = run_crawler("crawl", "--seeds", str(empty), "-o", str(tmp_path / "o"))
    assert proc.returncode == 2 and "no valid seed URL given" in proc.stderr


def test_seed_file_garbage_lines_reported_and_valid_ones_crawled(tmp_path: Path) -> None:
    page = Page("<html><head><title>t</title></head><body>hello</body></html>")
    sites = {"a.test": Site(pages={"/": page, "/x": page}), "b.test": Site(pages={"/": page})}
    with TestWeb(sites) as web:
        seeds = tmp_path / "seeds.txt"
        seeds.write_text(
            f"# my seeds\n{web.url('a.test', '/')}\nnot a url at all\nftp://a.test/file\n\n"
            f"{web.url('b.test', '/')}\nhttp://exa mple.com:99999/\n{web.url('a.test', '/x')}\n"
        )
        proc = run_crawler(
            "crawl",
            "--seeds",
            str(seeds),
            "-o",
            str(tmp_path / "o"),
            "--delay",
            "0",
            "--resolve",
            "*.test=127.0.0.1",
            "--no-progress",
            "--no-sitemaps",
        )
    assert proc.returncode == 0, proc.stderr
    assert f"{seeds}:3:" in proc.stderr and "not an absolute" in proc.stderr
    assert f"{seeds}:4:" in proc.stderr and "scheme not allowed" in proc.stderr
    assert f"{seeds}:7:" in proc.stderr
    keys = sorted(page_key(r["url"]) for r in read_records(tmp_path / "o" / "pages.jsonl"))
    assert keys == ["a.test/", "a.test/x", "b.test/"]


def test_unmapped_host_on_loopback_is_refused(tmp_path: Path) -> None:
    page = Page("<html><body>secret</body></html>")
    with TestWeb({"localhost": Site(pages={"/": page})}) as web:
        proc = run_crawler("crawl", f"http://localhost:{web.port}/", "-o", str(tmp_path / "o"), "--no-progress")
        log = web.log
    assert proc.returncode == 0, proc.stderr
    (rec,) = read_records(tmp_path / "o" / "pages.jsonl")
    assert rec["error"]["type"] in {"private_address", "robots_disallowed"}
    assert log == []


def test_seed_on_blocked_port_gets_a_typed_record(tmp_path: Path) -> None:
    """A seed on port 25 is recorded with `bad_port` (no request); `allow_ports = [25]` lifts the block."""
    out = tmp_path / "o"
    proc = run_crawler(
        "crawl", "http://a.test:25/", "-o", str(out), "--resolve", "*.test=127.0.0.1", "--no-progress",
    )  # fmt: skip
    assert proc.returncode != 2, proc.stderr
    (rec,) = read_records(out / "pages.jsonl")
    assert rec["error"]["type"] == "bad_port", rec
    cfg = tmp_path / "allow.toml"
    cfg.write_text(
        '[fetch]\nmax_attempts = 1\n[politeness]\nrobots_give_up = 0\n[domains."a.test"]\nallow_ports = [25]\n'
    )
    allowed = tmp_path / "allowed"
    proc = run_crawler(
        "crawl", "http://a.test:25/", "-o", str(allowed), "-c", str(cfg), "--resolve", "*.test=127.0.0.1",
        "--no-progress",
    )  # fmt: skip
    (rec,) = read_records(allowed / "pages.jsonl")
    assert rec["error"]["type"] != "bad_port", rec  # a connection was attempted (nothing listens on :25)
