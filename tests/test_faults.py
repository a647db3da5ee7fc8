"""Fault injection on a real cluster (issue 9): the cluster's promises, judged from outside.

Every test runs a private `redis-server`, a frontier and several workers as OS processes (`crawler
frontier`, `crawler worker`, `crawler submit`, `crawler status`) against a loopback multi-host test
web, breaks something on purpose (SIGSTOP, SIGKILL, a fault point armed with `CRAWLER_FAULT`, see
`crawler/cluster/faults.py`), and judges the result only by what the outside world sees:

* the web server's request log: per host, never two requests in flight and starts at least the
  delay apart (`tests/judges.py`);
* the records all workers wrote: every reachable page recorded exactly once.

The site: 8 hosts × 40 pages (chains of links, so a host's pages are found one by one), delay 0.2 s,
one request per host at a time, robots.txt allowing all. Workers beat every 0.4 s with a 2 s
heartbeat TTL; leases live 120 s so that a crawl waiting for one to expire is plain to see.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import orjson
import pytest
from aiohttp import web as aioweb

from crawler.cluster.service import ServiceTiming
from tests.conftest import page_key, read_records, run_crawler, start_crawler
from tests.judges import fetched_more_than_once, pages_only, politeness_problems, recording_problems
from tests.redis_server import RedisServer, require_redis
from tests.testweb import PORT_TOKEN, Handler, LoggedRequest, Page, Site, TestWeb, make_link_web, sequence

DELAY = 0.2
HEARTBEAT = 2.0
LEASE_TTL = 120.0
LEADER_TTL = ServiceTiming().leader_ttl  # not settable from the CLI: `crawler frontier` always uses this
HOSTS = 8
NEW_HOSTS = 4
PAGES = 40  # per host: 37 chained pages, 2 under /private/ and an orphan only they link to
WORKERS = 3
CRAWL_BUDGET = 45.0  # the whole 8×40 crawl takes ~10–15 s; well under LEASE_TTL

T = TypeVar("T")


class NotDone(AssertionError):
    """`Cluster.wait_done` ran out of time."""


def link_web(n_hosts: int = HOSTS, *, first: int = 0, seed: int = 1) -> tuple[dict[str, Site], set[str]]:
    """`n_hosts` hosts `h{first}.test`… of PAGES pages each, all reachable from `/`; (sites, page keys)."""
    sites, reachable, disallowed = make_link_web(n_hosts, PAGES - 3, seed=seed, first_host=first, robots_allow_all=True)
    assert not disallowed and len(reachable) == n_hosts * PAGES
    return sites, reachable


class Cluster:
    """One private redis-server and the crawler processes of one job, each logging to `tmp/NAME.log`.

    A context manager: leaving it SIGKILLs every process still running and the Redis server.
    """

    def __init__(
        self,
        tmp: Path,
        web: TestWeb,
        *,
        job: str = "faults",
        worker_concurrency: int = 8,
        lease_ttl: float = LEASE_TTL,
        extra_config: str = "",
        max_pages: int = 0,
    ) -> None:
        self.tmp = tmp
        self.web = web
        self.job = job
        self.redis = RedisServer(tmp / "redis")
        self.out = tmp / "out"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.may_exit: set[str] = set()  # processes this test ended (or expects to end) on purpose
        self.cfg = tmp / "job.toml"
        self.lease_ttl = lease_ttl
        self.cfg.write_text(
            f"[politeness]\ndelay = {DELAY}\nconcurrency = 1\n"
            f"[crawl]\nconcurrency = {worker_concurrency}\nmax_depth = 100\nmax_pages = {max_pages}\n" + extra_config
        )

    # -- lifecycle ---------------------------------------------------------------------------------

    def __enter__(self) -> Cluster:
        require_redis()
        self.redis.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()  # SIGKILL ends a stopped process too
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        self.redis.kill()

    def shutdown(self, timeout: float = 20.0) -> None:
        """SIGCONT and SIGTERM every process, wait for them (SIGKILL after `timeout`): outputs are final."""
        alive = [(n, p) for n, p in self.procs.items() if p.poll() is None]
        for _, proc in alive:
            proc.send_signal(signal.SIGCONT)
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for _, proc in alive:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self.may_exit.update(n for n, _ in alive)

    # -- processes ---------------------------------------------------------------------------------

    def common(self) -> list[str]:
        """Flags every process of the job gets."""
        return [
            "--redis", self.redis.url,
            "--job", self.job,
            "--heartbeat-ttl", str(HEARTBEAT),
            "--lease-ttl", str(self.lease_ttl),
        ]  # fmt: skip

    def config(self) -> list[str]:
        """The job's configuration. Every process gets it: one started before `submit` reads no job config."""
        return ["-c", str(self.cfg), "--resolve", "*.test=127.0.0.1"]

    def _start(self, name: str, args: list[str], env: dict[str, str] | None = None) -> None:
        assert name not in self.procs or self.procs[name].poll() is not None, f"{name} is already running"
        self.procs[name] = start_crawler(*args, log=self.tmp / f"{name}.log", env=env)
        self.may_exit.discard(name)

    def start_frontier(self, name: str = "frontier", *, fault: str | None = None, after: int = 1) -> None:
        """`crawler frontier`; `fault` arms a fault point (`frontier:kill-after-claim`, …) at its `after`-th pass."""
        env = {"CRAWLER_FAULT": fault, "CRAWLER_FAULT_AFTER": str(after)} if fault else None
        self._start(name, ["frontier", *self.common(), *self.config()], env)
        if fault:
            self.may_exit.add(name)  # it may kill itself

    def start_worker(self, name: str, *, fault: str | None = None, after: int = 1) -> None:
        """`crawler worker --id NAME`, writing `out/pages-NAME.jsonl`; `fault` as in `start_frontier`."""
        env = {"CRAWLER_FAULT": fault, "CRAWLER_FAULT_AFTER": str(after)} if fault else None
        self._start(name, ["worker", *self.common(), *self.config(), "--id", name, "-o", str(self.out)], env)

    def signal(self, name: str, sig: signal.Signals) -> None:
        """Send `sig` to process `name`."""
        self.procs[name].send_signal(sig)

    def pause(self, name: str) -> None:
        """SIGSTOP."""
        self.signal(name, signal.SIGSTOP)

    def resume(self, name: str) -> None:
        """SIGCONT."""
        self.signal(name, signal.SIGCONT)

    def stop(self, name: str, timeout: float = 20.0) -> int:
        """SIGTERM (a clean stop) and wait; the exit code."""
        self.may_exit.add(name)
        self.signal(name, signal.SIGTERM)
        return self.wait_exit(name, timeout)

    def kill(self, name: str) -> None:
        """SIGKILL and reap."""
        self.may_exit.add(name)
        self.signal(name, signal.SIGKILL)
        self.procs[name].wait(timeout=10)

    def paused(self, name: str) -> bool:
        """Whether the process is stopped (state T in /proc)."""
        try:
            stat = Path(f"/proc/{self.procs[name].pid}/stat").read_text()
        except FileNotFoundError:
            return False
        return stat.rpartition(")")[2].split()[0] in ("T", "t")

    def wait_exit(self, name: str, timeout: float) -> int:
        """The process's return code once it has exited (negative: killed by that signal)."""
        try:
            return self.procs[name].wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{name} still running after {timeout}s\n{self.tail(name)}") from None

    def tail(self, name: str, chars: int = 2500) -> str:
        """The end of a process's log."""
        path = self.tmp / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return f"--- {name} (exit {self.procs[name].poll()}) ---\n{text[-chars:]}"

    def tails(self) -> str:
        """The end of every process's log."""
        return "\n".join(self.tail(n, 1500) for n in self.procs)

    # -- the job -----------------------------------------------------------------------------------

    def submit(self, urls: list[str]) -> None:
        """`crawler submit URLS` with the job's configuration."""
        proc = run_crawler("submit", *urls, *self.common(), *self.config(), timeout=60)
        assert proc.returncode == 0, proc.stderr

    def status(self) -> dict[str, Any]:
        """`crawler status --json`."""
        proc = run_crawler("status", "--redis", self.redis.url, "--job", self.job, "--json", timeout=60)
        assert proc.returncode == 0, proc.stderr
        return orjson.loads(proc.stdout)

    def check_running(self) -> None:
        """Fail when a process this test did not end has exited."""
        for name, proc in self.procs.items():
            if name not in self.may_exit and proc.poll() is not None:
                raise AssertionError(f"{name} exited early with {proc.returncode}\n{self.tail(name)}")

    def wait_for(self, what: str, predicate: Callable[[], T], timeout: float, every: float = 0.1) -> T:
        """Poll `predicate` until it returns something truthy (returned); fail after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            self.check_running()
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{self.tails()}")
            time.sleep(every)

    def wait_done(self, timeout: float) -> float:
        """Wait until `crawler status --json` says done with nothing queued or in flight; the monotonic time.

        `status` is asked at most once a second, and only while no output file grew (a crawl still
        writing records is not done), so polling costs little CPU.
        """
        deadline = time.monotonic() + timeout
        last_size, last_asked = -1, 0.0
        info: dict[str, Any] = {}
        while time.monotonic() < deadline:
            self.check_running()
            size = self.output_size()
            now = time.monotonic()
            if size == last_size and now - last_asked >= 1.0:
                last_asked = now
                info = self.status()
                if info["done"] and info["queued"] == 0 and info["in_flight"] == 0:
                    return now
            last_size = size
            time.sleep(0.25)
        summary = {k: info.get(k) for k in ("done", "queued", "in_flight", "recorded", "frontier_leader", "skipped")}
        raise NotDone(f"not done after {timeout}s: {summary}\n{self.tails()}")

    def wait_recorded(self, n: int, timeout: float, idle: float = 3.0) -> bool:
        """Wait until `n` records are written; False when none was added for `idle` seconds (or at `timeout`)."""
        deadline = time.monotonic() + timeout
        count, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            self.check_running()
            now, latest = time.monotonic(), self.recorded()
            if latest >= n:
                return True
            if latest != count:
                count, since = latest, now
            elif now - since >= idle:
                return False
            time.sleep(0.1)
        return False

    def wait_workers(self, n: int, timeout: float = 30) -> None:
        """Wait until `crawler status` shows `n` live workers."""
        self.wait_for(
            f"{n} workers to beat",
            lambda: sum(w["alive"] for w in self.status()["workers"].values()) >= n,
            timeout,
            0.5,
        )

    def leader(self) -> str | None:
        """The service id holding the frontier leadership (`crawler status`)."""
        return self.status()["frontier_leader"]

    # -- outputs -----------------------------------------------------------------------------------

    def output_size(self) -> int:
        """Bytes in all workers' page files."""
        return sum(p.stat().st_size for p in self.out.glob("pages-*.jsonl"))

    def recorded(self, worker: str | None = None) -> int:
        """Records written so far (by one worker, or all); a line being written is not counted."""
        paths = [self.out / f"pages-{worker}.jsonl"] if worker else list(self.out.glob("pages-*.jsonl"))
        return sum(p.read_bytes().count(b"\n") for p in paths if p.exists())

    def hosts_of(self, worker: str) -> set[str]:
        """Hosts of the pages a worker has recorded so far."""
        path = self.out / f"pages-{worker}.jsonl"
        lines = path.read_bytes().split(b"\n")[:-1] if path.exists() else []
        return {page_key(orjson.loads(line)["url"]).split("/")[0] for line in lines if line.strip()}

    def records(self) -> list[dict[str, Any]]:
        """Every record of every worker (read after `shutdown`, so files are complete)."""
        return [r for p in sorted(self.out.glob("pages-*.jsonl")) for r in read_records(p)]


def slow_pages(sites: dict[str, Site], paths: tuple[str, ...], seconds: float) -> set[tuple[str, str]]:
    """Make `paths` of every host take `seconds` to answer; the returned set holds (host, path) while one is served."""
    serving: set[tuple[str, str]] = set()
    for host, site in sites.items():
        for path in paths:
            page = site.pages[path]
            assert isinstance(page, Page)
            site.pages[path] = _slow(page, seconds, serving, (host, path))
    return serving


def _slow(page: Page, seconds: float, serving: set[tuple[str, str]], key: tuple[str, str]) -> Handler:
    body = page.body if isinstance(page.body, bytes) else page.body.encode()

    async def handler(request: aioweb.Request) -> aioweb.StreamResponse:
        serving.add(key)
        try:
            await asyncio.sleep(seconds)
        finally:
            serving.discard(key)
        port = request.transport.get_extra_info("sockname")[1] if request.transport else 0
        return aioweb.Response(body=body.replace(PORT_TOKEN.encode(), str(port).encode()), content_type="text/html")

    return handler


def seed_urls(web: TestWeb, sites: dict[str, Site]) -> list[str]:
    """Each host's front page."""
    return [web.url(h) for h in sorted(sites, key=lambda h: int(h[1:].split(".")[0]))]


def started(c: Cluster, *names: str, **frontier: Any) -> None:
    """Start the named workers, then (once they all beat) a frontier, `start_frontier(**frontier)`.

    The frontier sees every worker in its first look at membership, so hosts keep one owner from the
    start (a worker that joined a moment later would take hosts over mid-crawl).
    """
    for name in names:
        c.start_worker(name)
    c.wait_workers(len(names))
    c.start_frontier(**frontier)


def workers(n: int = WORKERS) -> list[str]:
    """Worker names w0…"""
    return [f"w{i}" for i in range(n)]


def judge(problems: list[str]) -> None:
    """Fail with every problem found, each on its own line."""
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems)


def refetch_note(log: list[LoggedRequest]) -> str:
    """Pages requested more than once, as a note for a failure message."""
    again = fetched_more_than_once(log)
    return f"(server log: {len(again)} pages requested more than once: {list(again)[:10]})" if again else ""


@pytest.fixture
def site() -> Iterator[tuple[dict[str, Site], set[str]]]:
    """The 8×40 site."""
    yield link_web()


# -- acceptance 1: seeds submitted to a running cluster ---------------------------------------------


@pytest.mark.parametrize("first_list", ["after-start", "before-start"])
def test_submit_after_start_and_a_second_seed_list_mid_crawl(tmp_path: Path, first_list: str) -> None:
    """Frontier and workers running before `submit`; then 4 new hosts submitted mid-crawl.

    `after-start` is the acceptance case; `before-start` submits the first list before the processes
    start (which works) so that the second list is judged on its own.
    """
    sites, reachable = link_web(HOSTS, seed=1)
    new_sites, new_reachable = link_web(NEW_HOSTS, first=HOSTS, seed=2)
    first_hosts, new_hosts = set(sites), set(new_sites)
    with TestWeb({**sites, **new_sites}) as web, Cluster(tmp_path, web) as c:
        if first_list == "before-start":
            c.submit(seed_urls(web, sites))
        started(c, *workers())
        if first_list == "after-start":
            # Everyone is up (every worker beating, a leader elected) before the seeds exist.
            c.wait_for("the frontier to lead", c.leader, 30, every=0.5)
            c.submit(seed_urls(web, sites))
        # Mid-crawl: a quarter of the first list recorded (or the crawl went idle: its links were dropped).
        c.wait_recorded(len(reachable) // 4, 30)
        second_at = time.monotonic()
        c.submit(seed_urls(web, new_sites))
        done_at = c.wait_done(CRAWL_BUDGET)
        c.shutdown()
        records = c.records()
    log = web.log
    problems = [f"first list: {p}" for p in recording_problems(records, reachable, hosts=first_hosts)]
    problems += [f"second list: {p}" for p in recording_problems(records, new_reachable, hosts=new_hosts)]
    if not any(r.host in first_hosts and r.started > second_at for r in log):
        problems.append("the second list was not submitted mid-crawl: nothing of the first was fetched after it")
    problems += politeness_problems(log, DELAY)
    skipped = _skipped(c)
    judge(problems + ([f"workers' stats: {skipped}"] if problems and skipped else []))
    print(f"done {done_at - second_at:.1f}s after the second list")


def _skipped(c: Cluster) -> str:
    """Links the workers reported skipped (e.g. out_of_scope), from their stats files, for a failure message."""
    found = {}
    for path in sorted(c.out.glob("stats-*.json")):
        with contextlib.suppress(ValueError, OSError):
            data = orjson.loads(path.read_bytes())
            found[path.stem] = data.get("skipped", data)
    return str(found)


# -- acceptance 2: a paused worker ("zombie") ------------------------------------------------------


@pytest.mark.parametrize("when", ["mid-fetch", "after-a-few-pages"])
def test_paused_worker_is_fenced(tmp_path: Path, site: tuple[dict[str, Site], set[str]], when: str) -> None:
    """SIGSTOP a worker for 2× its heartbeat TTL, then SIGCONT: no URL recorded twice, the hosts stay polite.

    `mid-fetch` stops it while a page of one of its hosts is being served (each host's /p5.html and
    /p15.html take 1 s): its leases go to other workers, which fetch that page again, and the paused
    worker wakes up holding the answer. `after-a-few-pages` stops it at no chosen moment.
    """
    sites, reachable = site
    serving = slow_pages(sites, ("/p5.html", "/p15.html"), 1.0)
    with TestWeb(sites) as tw, Cluster(tmp_path, tw) as c:
        c.submit(seed_urls(tw, sites))
        started(c, *workers())
        c.wait_for("w1 to record a few pages", lambda: c.recorded("w1") >= 5, 30)
        if when == "mid-fetch":
            c.wait_for(
                "a slow page of one of w1's hosts to be in flight",
                lambda: {h for h, _ in list(serving)} & c.hosts_of("w1"),
                30,
                every=0.02,
            )
        c.pause("w1")
        time.sleep(2 * HEARTBEAT)
        c.resume("w1")
        c.wait_done(CRAWL_BUDGET)
        c.shutdown()
        records = c.records()
    log = tw.log
    problems = recording_problems(records, reachable) + politeness_problems(log, DELAY)
    judge(problems + ([refetch_note(log)] if problems else []))


def test_a_fenced_worker_offers_the_links_of_its_dropped_answers_again(tmp_path: Path) -> None:
    """One worker stops just before sending a batch of answers and stays stopped past its heartbeat TTL
    (as in a Redis outage longer than the TTL): its answers are refused and dropped, and it rejoins.

    It fetches those pages again (it is the only worker), and their links must reach the frontier again:
    this process's dedup cache saw them when the dropped answers were made, but the store never did.
    """
    sites, reachable = link_web(4, seed=7)
    with TestWeb(sites) as tw, Cluster(tmp_path, tw) as c:
        c.submit(seed_urls(tw, sites))
        c.start_worker("w0", fault="worker:stop-before-ack", after=3)
        c.wait_workers(1)
        c.start_frontier()
        c.wait_for("w0 to stop itself before sending answers", lambda: c.paused("w0"), 30)
        assert c.recorded("w0") >= 1, "the fault point fired before any record was written"
        time.sleep(2 * HEARTBEAT)  # its heartbeat key expires: the frontier takes its leases back
        c.resume("w0")
        c.wait_done(CRAWL_BUDGET)
        c.shutdown()
        records = c.records()
    assert "leases lost: dropped" in (tmp_path / "w0.log").read_text()
    judge(recording_problems(records, reachable))


# -- acceptance 3: frontier killed between claim and push -------------------------------------------


@pytest.mark.parametrize("after", [10])
def test_frontier_killed_between_claim_and_push(
    tmp_path: Path, site: tuple[dict[str, Site], set[str]], after: int
) -> None:
    """The frontier dies holding claimed, undelivered leases; a restarted one must not wait out the lease TTL."""
    sites, reachable = site
    bound = HEARTBEAT + LEADER_TTL + 5.0
    with TestWeb(sites) as web, Cluster(tmp_path, web) as c:
        c.submit(seed_urls(web, sites))
        started(c, *workers(), fault="frontier:kill-after-claim", after=after)
        code = c.wait_exit("frontier", 30)
        assert code == -signal.SIGKILL, f"the fault point did not fire (exit {code})\n{c.tail('frontier')}"
        killed_at = time.monotonic()
        c.start_frontier("frontier2")
        restarted_at = time.monotonic()
        try:
            done_at = c.wait_done(bound + 25.0)  # the rest of the crawl takes ~10 s; the lease TTL is 120 s
        except NotDone as exc:
            idle = _idle_hosts(web.log, sites, reachable, since=killed_at)
            raise AssertionError(
                f"not done {time.monotonic() - restarted_at:.0f}s after the restart (lease TTL {LEASE_TTL:.0f}s); "
                f"hosts with pages left and no request since the kill: {idle}\n{exc}"
            ) from None
        c.shutdown()
        records = c.records()
    log = web.log
    problems = recording_problems(records, reachable)
    for host in sorted(sites):
        after_restart = [r.started for r in log if r.host == host and r.started >= killed_at]
        if after_restart and min(after_restart) - restarted_at > bound:
            problems.append(
                f"{host} resumed {min(after_restart) - restarted_at:.1f}s after the restart "
                f"(heartbeat TTL + leader TTL + 5 s = {bound:.0f}s)"
            )
    problems += politeness_problems(log, DELAY)
    judge(problems)
    print(f"done {done_at - restarted_at:.1f}s after the restart")


def _idle_hosts(log: list[LoggedRequest], sites: dict[str, Site], reachable: set[str], since: float) -> list[str]:
    fetched = {r.host + r.path for r in log}
    left = {k.split("/", 1)[0] for k in reachable if k not in fetched}
    busy = {r.host for r in log if r.started >= since}
    return sorted(h for h in sites if h in left and h not in busy)


# -- acceptance 4: a leader paused mid-pass -----------------------------------------------------------


@pytest.mark.parametrize("after", [40])
def test_paused_leader_mid_pass_then_resumed(
    tmp_path: Path, site: tuple[dict[str, Site], set[str]], after: int
) -> None:
    """The leader stops itself between reading outcomes and applying them; a standby takes over; it wakes.

    The schedule is the adversarial one: the new leader is itself stopped around the old one's wake-up,
    from a moment a worker answered a lease it has not applied yet, so the outcome list is not empty
    when the old leader finishes its pass. A deposed leader must change nothing: every page recorded
    once, and fetched once.
    """
    sites, reachable = site
    with TestWeb(sites) as web, Cluster(tmp_path, web) as c:
        c.submit(seed_urls(web, sites))
        started(c, *workers(), name="old", fault="frontier:stop-after-read", after=after)
        old_id = c.wait_for("the first frontier to lead", c.leader, 30, every=0.5)
        c.start_frontier("standby")
        c.wait_for("the leader to stop itself after reading outcomes", lambda: c.paused("old"), 30)
        new_id = c.wait_for(
            "the standby to take over",
            lambda: (lead := c.leader()) not in (None, old_id) and lead,
            LEADER_TTL + 15,
            0.5,
        )
        assert f"frontier {new_id} is the leader" in (tmp_path / "standby.log").read_text()
        base = c.recorded()
        c.wait_for("the new leader to apply outcomes", lambda: c.recorded() >= base + 5, 20)
        c.wait_for("answers the new leader has not applied", lambda: _hold_until_answered(c, "standby"), 20, 0)
        c.resume("old")
        time.sleep(1.0)  # the old leader finishes the pass it was in
        c.resume("standby")
        c.wait_done(CRAWL_BUDGET)
        still_leader = c.leader()
        c.shutdown()
        records = c.records()
    log = web.log
    problems = recording_problems(records, reachable)
    again = fetched_more_than_once(log)
    if again:
        problems.append(f"{len(again)} pages fetched more than once: {list(again.items())[:10]}")
    if still_leader != new_id:
        problems.append(f"the leader at the end is {still_leader}, not the standby {new_id} (old {old_id})")
    judge(problems)


def _hold_until_answered(c: Cluster, name: str) -> bool:
    """Stop `name`; keep it stopped (True) once a worker wrote a record meanwhile, so its answer waits unapplied.

    Records are written just before their answer is pushed. With no lease out, nothing comes: resume it
    for a moment and return False (to be called again).
    """
    before = c.recorded()
    c.pause(name)
    deadline = time.monotonic() + 0.8
    while time.monotonic() < deadline:
        if c.recorded() > before:
            time.sleep(0.3)  # the push follows the record
            return True
        time.sleep(0.02)
    c.resume(name)
    time.sleep(0.3)
    return False


# -- what holds today -------------------------------------------------------------------------------


def test_worker_killed_mid_crawl_is_taken_over(tmp_path: Path, site: tuple[dict[str, Site], set[str]]) -> None:
    """SIGKILL a worker: its hosts go to the others within the heartbeat TTL; every page recorded once."""
    sites, reachable = site
    with TestWeb(sites) as web, Cluster(tmp_path, web) as c:
        c.submit(seed_urls(web, sites))
        started(c, *workers())
        c.wait_for("w1 to record a few pages", lambda: c.recorded("w1") >= 5, 30)
        c.kill("w1")
        killed_at = time.monotonic()
        w1_hosts = {page_key(r["url"]).split("/")[0] for r in read_records(c.out / "pages-w1.jsonl")}
        c.wait_done(CRAWL_BUDGET)
        c.shutdown()
        records = c.records()
    log = web.log
    problems = recording_problems(records, reachable) + politeness_problems(log, DELAY)
    resumed = [r.started for r in log if r.host in w1_hosts and r.started > killed_at]
    if resumed and min(resumed) - killed_at > HEARTBEAT + 5:
        problems.append(f"w1's hosts resumed {min(resumed) - killed_at:.1f}s after the kill")
    # A page may be fetched again only if it was in w1's hands at the kill: at most one per host.
    again = fetched_more_than_once(log)
    per_host: dict[str, int] = {}
    for key in again:
        per_host[key.split("/")[0]] = per_host.get(key.split("/")[0], 0) + 1
    if any(n > 1 or h not in w1_hosts for h, n in per_host.items()) or any(n > 2 for n in again.values()):
        problems.append(f"pages fetched again beyond w1's in-flight ones: {again}")
    judge(problems)


def test_worker_joining_mid_crawl_takes_a_share(tmp_path: Path) -> None:
    """A third worker joins a running crawl: it gets hosts, and nothing is recorded twice or fetched rudely."""
    # 16 hosts: the ring gives the newcomer none of them with probability (2/3)^16 (0.15 %), not (2/3)^8 (4 %).
    sites, reachable = link_web(16)
    with TestWeb(sites) as web, Cluster(tmp_path, web) as c:
        c.submit(seed_urls(web, sites))
        started(c, "w0", "w1")
        c.wait_for("a fifth of the pages", lambda: c.recorded() >= len(reachable) // 5, 30)
        c.start_worker("w2")
        c.wait_done(CRAWL_BUDGET)
        c.shutdown()
        records = c.records()
        joined = c.recorded("w2")
    problems = recording_problems(records, reachable) + politeness_problems(web.log, DELAY)
    if not joined:
        problems.append("the worker that joined recorded nothing")
    judge(problems)


def test_cluster_harness_cleans_up(tmp_path: Path) -> None:
    """The harness: a paused process is seen as paused, and leaving the context kills everything."""
    sites, _ = link_web(1)
    with TestWeb(sites) as web:
        with Cluster(tmp_path, web) as c:
            c.start_worker("w0")
            c.wait_for("w0 to run", lambda: c.procs["w0"].poll() is None, 5)
            c.pause("w0")
            c.wait_for("w0 to be paused", lambda: c.paused("w0"), 5)
            c.resume("w0")
            c.wait_for("w0 to run again", lambda: not c.paused("w0"), 5)
            c.start_worker("w1")
            c.wait_workers(2)  # signal handlers are in place once it beats
            assert c.stop("w1") >= 0  # handled SIGTERM (its exit code is not judged here)
            c.pause("w0")
            procs = list(c.procs.values())
            server = c.redis
        assert procs[0].returncode == -signal.SIGKILL and procs[1].returncode >= 0
        assert not server.running


# -- a hold longer than a lease (found in review) -----------------------------------------------------


def test_a_host_held_past_the_lease_ttl_is_not_fetched_twice(tmp_path: Path) -> None:
    """A 429 with Retry-After longer than the lease TTL, per-host concurrency 3: leases waiting for the host are
    handed back in time instead of being given out again while they wait; each page is recorded once, and no
    request comes before the Retry-After."""
    links = "".join(f"<a href='/p{i}'>{i}</a>" for i in range(1, 7))
    body = "<html><body>{}" + links + "</body></html>"
    pages: dict[str, Any] = {f"/p{i}": Page(body.format(f"page {i} " * 50)) for i in range(2, 7)}
    pages["/"] = Page(body.format("front " * 50))
    pages["/p1"] = sequence(Page("slow down", status=429, headers={"Retry-After": "6"}), then=Page(body.format("one")))
    # A slow robots.txt: the seeds are all leased (concurrency 3) while it is fetched, then wait in the host's
    # slot, where /p1's Retry-After holds them 6 s, longer than their 2 s leases.
    pages["/robots.txt"] = Page("User-agent: *\nAllow: /\n", delay=1.0)
    sites = {"held.test": Site(pages=pages)}
    extra = '[fetch]\nretry_backoff = [1.0]\n[domains."held.test"]\nconcurrency = 3\n'
    with TestWeb(sites) as web, Cluster(tmp_path, web, lease_ttl=2.0, extra_config=extra) as c:
        c.submit([web.url("held.test", p) for p in ("/p1", "/p2", "/p3", "/")])
        started(c, "w0")
        c.wait_done(40)
        c.shutdown()
        records = c.records()
    paths = sorted(page_key(r["url"]).split("/", 1)[1] for r in pages_only(records))
    assert paths == ["", "p1", "p2", "p3", "p4", "p5", "p6"], paths  # each once (p1 after its retry)
    log = [r for r in web.log if r.path != "/robots.txt"]
    first_429 = min(r.finished for r in log if r.status == 429)
    early = [r.path for r in log if r.started > first_429 and r.started < first_429 + 6.0 - 0.05]
    assert not early, f"requests inside the Retry-After window: {early}"


def test_max_pages_counts_for_the_whole_job(tmp_path: Path, site: tuple[dict[str, Site], set[str]]) -> None:
    """`max_pages` is the job's budget, not each worker's: three workers record exactly that many pages."""
    sites, _ = site
    with TestWeb(sites) as web, Cluster(tmp_path, web, max_pages=50) as c:
        c.submit(seed_urls(web, sites))
        started(c, *workers())
        # Done with URLs still queued: the budget is spent.
        c.wait_for("the job to be done", lambda: c.status()["done"], CRAWL_BUDGET, every=0.5)
        c.shutdown()
        records = c.records()
        recording = [w for w in workers() if c.recorded(w)]
    assert len(records) == 50, len(records)
    assert len({page_key(r["url"]) for r in records}) == 50
    assert len(recording) > 1, recording  # the budget was shared, not spent by one worker
