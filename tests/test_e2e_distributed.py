"""End to end on a real Redis: a frontier and three workers as separate OS processes on the test web."""

from __future__ import annotations

import itertools
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from tests.conftest import page_key, read_records, run_crawler, start_crawler
from tests.judges import assert_polite, assert_recorded_once, pages_only
from tests.redis_server import RedisServer
from tests.testweb import LoggedRequest, TestWeb, make_link_web

pytest_plugins = ["redis_server"]

DELAY = 0.2
HEARTBEAT = 2.0
HOSTS = 16  # enough that each of 3 workers owns some on the ring (P(none) = (2/3)^16)


class Cluster:
    """A frontier and N workers of one job, with helpers to kill, restart and wait."""

    def __init__(self, server: RedisServer, web: TestWeb, tmp: Path, job: str, delay: float = DELAY) -> None:
        self.server = server
        self.web = web
        self.tmp = tmp
        self.job = job
        self.out = tmp / "out"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.cfg = tmp / "job.toml"
        self.cfg.write_text(f"[politeness]\ndelay = {delay}\n[crawl]\nconcurrency = 8\nmax_depth = 100\n")

    def common(self) -> list[str]:
        return ["--redis", self.server.url, "--job", self.job]

    def submit(self, urls: list[str]) -> subprocess.CompletedProcess[str]:
        proc = run_crawler("submit", *urls, *self.common(), "-c", str(self.cfg), "--resolve", "*.test=127.0.0.1")
        assert proc.returncode == 0, proc.stderr
        return proc

    def start_frontier(self, name: str = "frontier") -> None:
        self.procs[name] = start_crawler("frontier", *self.common(), log=self.tmp / f"{name}.log")

    def start_worker(self, wid: str) -> None:
        self.procs[wid] = start_crawler(
            "worker",
            *self.common(),
            "--id",
            wid,
            "-o",
            str(self.out),
            "--heartbeat-ttl",
            str(HEARTBEAT),
            log=self.tmp / f"{wid}.log",
        )

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def done(self) -> bool:
        client = redis.Redis.from_url(self.server.url)
        try:
            return client.hget(f"crawl:{{{self.job}}}:state", "done") == b"1"
        except redis.ConnectionError:
            return False
        finally:
            client.close()

    def wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            for name, proc in self.procs.items():
                assert proc.poll() is None, f"{name} exited early:\n" + (self.tmp / f"{name}.log").read_text()[-3000:]
            time.sleep(0.1)
        logs = "\n".join((self.tmp / f"{n}.log").read_text()[-1500:] for n in self.procs)
        raise AssertionError(f"timed out waiting for {what}\n{logs}")

    def records(self) -> list[dict]:
        return [r for path in sorted(self.out.glob("pages-*.jsonl")) for r in read_records(path)]

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.procs.clear()


@pytest.fixture
def cluster(tmp_path: Path, make_redis_server: Callable[..., RedisServer], redis_job: str) -> Iterator[Cluster]:
    sites, reachable, disallowed = make_link_web(n_hosts=HOSTS, pages_per_host=10, seed=3)
    server = make_redis_server(appendonly=True)
    with TestWeb(sites) as web:
        c = Cluster(server, web, tmp_path, redis_job)
        c.reachable, c.disallowed = reachable, disallowed  # type: ignore[attr-defined]
        try:
            yield c
        finally:
            c.stop()


def _start(c: Cluster, workers: int = 3) -> None:
    c.submit([c.web.url(f"h{i}.test") for i in range(HOSTS)])
    c.start_frontier()
    for i in range(workers):
        c.start_worker(f"w{i}")


def _assert_exactly_once(c: Cluster) -> None:
    assert_recorded_once(c.records(), c.reachable, c.disallowed)  # type: ignore[attr-defined]


def _assert_polite(log: list[LoggedRequest], delay: float) -> None:
    assert_polite(log, delay, slack=0.01)


def test_three_workers_record_every_page_once_and_stay_polite(cluster: Cluster) -> None:
    _start(cluster)
    cluster.wait(cluster.done, 120, "the job to finish")
    _assert_exactly_once(cluster)
    log = cluster.web.log
    _assert_polite(log, DELAY)
    assert sum(1 for r in log if r.path == "/robots.txt") == HOSTS  # once per host for the whole cluster
    assert not [r for r in log if r.path.startswith("/private/")]
    per_worker = Counter(p.name for p in cluster.out.glob("pages-*.jsonl") if p.stat().st_size)
    assert len(per_worker) == 3, "every worker took part"
    status = run_crawler("status", *cluster.common(), "--json")
    assert status.returncode == 0 and '"done": true' in status.stdout


def test_worker_killed_mid_crawl_is_taken_over(cluster: Cluster) -> None:
    _start(cluster)
    cluster.wait(lambda: len(read_records(cluster.out / "pages-w1.jsonl")) >= 5, 60, "w1 to record pages")
    cluster.kill("w1")
    killed_at = time.monotonic()
    w1_hosts = {page_key(r["url"]).split("/")[0] for r in read_records(cluster.out / "pages-w1.jsonl")}
    cluster.wait(cluster.done, 120, "the job to finish after the kill")
    _assert_exactly_once(cluster)
    log = cluster.web.log
    resumed = [r.started for r in log if r.host in w1_hosts and r.started > killed_at]
    if resumed:
        assert min(resumed) - killed_at <= HEARTBEAT + 5, "w1's hosts were not taken over in time"
    repeats = Counter(r.host + r.path for r in log)
    extra = [k for k, n in repeats.items() if n > 1 and not k.endswith("/robots.txt")]
    assert len(extra) <= 8, extra  # at most one extra request per URL in flight at the kill (concurrency 8)
    first_seen = {}
    for r in sorted(log, key=lambda r: r.started):
        first_seen.setdefault(r.host + r.path, r.started)
    assert all(repeats[k] == 2 and first_seen[k] <= killed_at for k in extra), extra
    _assert_polite(log, DELAY)


def test_frontier_killed_and_restarted_loses_nothing(cluster: Cluster) -> None:
    _start(cluster)
    cluster.wait(lambda: len(cluster.records()) >= 20, 60, "some pages")
    cluster.kill("frontier")
    time.sleep(1.0)
    cluster.start_frontier("frontier2")
    cluster.wait(cluster.done, 120, "the job to finish after the frontier restart")
    _assert_exactly_once(cluster)


def test_redis_restart_with_aof_loses_nothing(cluster: Cluster) -> None:
    _start(cluster)
    cluster.wait(lambda: len(cluster.records()) >= 20, 60, "some pages")
    cluster.server.stop()
    time.sleep(2.0)
    cluster.server.restart()
    cluster.wait(cluster.done, 120, "the job to finish after the Redis restart")
    _assert_exactly_once(cluster)


def test_domain_set_changes_the_gap_on_a_running_crawl(
    tmp_path: Path, make_redis_server: Callable[..., RedisServer], redis_job: str
) -> None:
    sites, _, _ = make_link_web(n_hosts=1, pages_per_host=40, seed=5, cross_links=False)
    server = make_redis_server()
    with TestWeb(sites) as web:
        c = Cluster(server, web, tmp_path, redis_job, delay=0.1)
        try:
            c.submit([web.url("h0.test")])
            c.start_frontier()
            c.start_worker("w0")
            c.wait(lambda: len(c.records()) >= 5, 60, "pages at the old delay")
            changed = run_crawler("domain", "set", "h0.test", "--delay", "0.8", *c.common())
            assert changed.returncode == 0, changed.stderr
            applied_by = time.monotonic() + 4.0  # workers poll overrides every 2 s
            c.wait(lambda: len([r for r in web.log if r.started > applied_by]) >= 4, 60, "pages at the new delay")
            shown = run_crawler("domain", "show", "h0.test", *c.common())
            assert '"delay": 0.8' in shown.stdout
        finally:
            c.stop()
        times = sorted(r.started for r in web.log)
    early = [b - a for a, b in itertools.pairwise(times[:6])]
    late = [b - a for a, b in itertools.pairwise([t for t in times if t > applied_by])]
    assert min(early) >= 0.09 and min(early) < 0.5
    assert min(late) >= 0.79, late


def test_crawl_with_redis_runs_frontier_and_worker_in_one_process(
    tmp_path: Path, make_redis_server: Callable[..., RedisServer], redis_job: str
) -> None:
    sites, reachable, _ = make_link_web(n_hosts=3, pages_per_host=6, seed=9)
    server = make_redis_server()
    with TestWeb(sites) as web:
        out = tmp_path / "out"
        proc = run_crawler(
            "crawl",
            *[web.url(h) for h in sorted(sites)],
            "--redis",
            server.url,
            "--job",
            redis_job,
            "-o",
            str(out),
            "--delay",
            "0.05",
            "--resolve",
            "*.test=127.0.0.1",
            "--no-progress",
            timeout=120,
        )
    assert proc.returncode == 0, proc.stderr
    records = [r for p in out.glob("pages-*.jsonl") for r in read_records(p)]
    ok = Counter(page_key(r["url"]) for r in pages_only(records) if r["error"] is None)
    assert set(ok) == reachable and max(ok.values()) == 1
    probes = Counter(page_key(r["url"]) for r in records if r["sitemap_urls"] is not None)
    assert probes == {f"{h}/sitemap.xml": 1 for h in sites}  # each host's guessed sitemap, once for the job
    again = run_crawler("submit", web.url("h0.test"), "--redis", server.url, "--job", redis_job)
    assert again.returncode == 0 and "0 URLs queued, 1 already known" in again.stderr, again.stderr


def test_second_frontier_stands_by_and_takes_over(cluster: Cluster) -> None:
    _start(cluster)
    cluster.start_frontier("frontier-b")
    cluster.wait(lambda: len(cluster.records()) >= 15, 60, "some pages")

    def leads(name: str) -> bool:
        return "is the leader" in (cluster.tmp / f"{name}.log").read_text()

    leaders = [name for name in ("frontier", "frontier-b") if leads(name)]
    assert len(leaders) == 1, leaders  # one service acts, the other stands by
    standby = "frontier-b" if leaders == ["frontier"] else "frontier"
    cluster.kill(leaders[0])
    cluster.wait(cluster.done, 120, "the standby to finish the job")
    assert leads(standby)
    _assert_exactly_once(cluster)
    _assert_polite(cluster.web.log, DELAY)


def test_a_lease_lost_between_redis_and_a_worker_is_handed_out_again(cluster: Cluster) -> None:
    """Simulates Redis dying after a worker's LPOP ran but before its reply arrived: the lease vanishes."""
    _start(cluster, workers=2)
    client = redis.Redis.from_url(cluster.server.url)
    stolen = None
    try:
        deadline = time.monotonic() + 30
        while stolen is None and time.monotonic() < deadline:
            stolen = client.lpop(f"crawl:{{{cluster.job}}}:worker:w0:inbox")
            time.sleep(0.01)
    finally:
        client.close()
    assert stolen is not None, "w0 never had a lease waiting"
    started = time.monotonic()
    cluster.wait(cluster.done, 60, "the lost lease to be handed out again")  # the lease TTL is 300 s
    assert time.monotonic() - started < 30
    _assert_exactly_once(cluster)
    assert "lost 1 leases" in (cluster.tmp / "frontier.log").read_text()
