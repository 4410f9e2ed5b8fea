"""HTTP load on a running `exceptao serve`: signed-in people requesting pages, and the server's memory meanwhile.

Each virtual user is one person: their own account, their own session (signed
in with password, then TOTP enrolled, as a first sign-in goes), their own
keep-alive connection from their own loopback address (127.0.0.10 and up: the
sign-in throttle counts attempts per address, as it would for people at
different machines). At concurrency C the first C users each send their next
request as soon as the previous one is answered (a closed loop), for a fixed
time after an unmeasured warm-up. Any answer but 200, and any transport error,
is counted as an error; a run with errors is not a valid result.

Where each answer's CPU went is read from /proc around each measured run:
the app process's own CPU time, all PostgreSQL processes' together (any other
work on the same server counts too) and this load generator's, each divided
by the answers, and how busy the machine's CPUs were meanwhile. On a machine
where all three share the CPUs this says how fast the pages could be served
here at best.

The server's resident memory is read from /proc/<pid>/status every
`interval` seconds while the load runs: VmRSS (plus any child processes it
started), and VmHWM, the kernel's own peak, reset when the load begins so it
also catches a peak between two samples.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from typing import Callable

import httpx
import pyotp

from exceptions_list import sign_in

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_TOTP_SECRET = re.compile(r'id="totp-secret">([A-Z2-7]+)<')
FIRST_ADDRESS = 10  # 127.0.0.10 is the first user's address


def user_client(port: int, slug: str, k: int) -> httpx.AsyncClient:
    """A client for user `k`: its own cookie jar, source address and one connection, the tenant's host name."""
    transport = httpx.AsyncHTTPTransport(local_address=f"127.0.0.{FIRST_ADDRESS + k}",
                                         limits=httpx.Limits(max_connections=1))
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", transport=transport,
                             headers={"Host": f"{slug}.localhost:{port}"}, timeout=60)


async def sign_in_with_totp(client: httpx.AsyncClient, email: str) -> None:
    """Password (the account's first sign-in), then TOTP enrolment, which completes the session with it."""
    await sign_in(client, email)
    page = await client.get("/account/totp?first=1")
    secret, token = _TOTP_SECRET.search(page.text), _CSRF.search(page.text)
    if page.status_code != 200 or not secret or not token:
        raise RuntimeError(f"TOTP enrolment page for {email} answered {page.status_code}")
    answer = await client.post("/account/totp", data={"code": pyotp.TOTP(secret.group(1)).now(),
                                                      "csrf_token": token.group(1)})
    if answer.status_code != 200 or "recovery" not in answer.text.lower():
        raise RuntimeError(f"TOTP enrolment for {email} answered {answer.status_code}")


async def sign_in_all(clients: list[httpx.AsyncClient], emails: list[str]) -> None:
    """Client k signs in as emails[k]; a few at a time, since each sign-in is an Argon2 check on the server."""
    gate = asyncio.Semaphore(4)

    async def one(client: httpx.AsyncClient, email: str) -> None:
        async with gate:
            await sign_in_with_totp(client, email)

    await asyncio.gather(*(one(c, e) for c, e in zip(clients, emails)))


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    failures: Counter = field(default_factory=Counter)


async def closed_loop(users: list[httpx.AsyncClient], next_path: Callable[[int], str], seconds: float) -> tuple[Tally, float]:
    """Every user requests `next_path(user)` again and again until `seconds` have passed; what came back."""
    tally = Tally()
    deadline = perf_counter() + seconds

    async def user(k: int, client: httpx.AsyncClient) -> None:
        while perf_counter() < deadline:
            started = perf_counter()
            try:
                response = await client.get(next_path(k))
                await response.aread()
            except httpx.HTTPError as exc:
                tally.failures[type(exc).__name__] += 1
                continue
            tally.latencies.append(perf_counter() - started)
            tally.statuses[response.status_code] += 1

    started = perf_counter()
    await asyncio.gather(*(user(k, c) for k, c in enumerate(users)))
    return tally, perf_counter() - started


_TICK = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """User and system CPU time of one process so far (/proc/<pid>/stat, fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def postgres_cpu_seconds() -> float:
    """CPU time of every PostgreSQL process on this machine so far (those that end meanwhile are not counted)."""
    total = 0.0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/comm") as f:
                if f.read().strip() != "postgres":
                    continue
            total += process_cpu_seconds(int(entry.name))
        except (FileNotFoundError, ProcessLookupError):
            continue  # it ended between the listing and the read
    return total


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, all) CPU seconds of the whole machine so far, from /proc/stat's first line."""
    with open("/proc/stat") as f:
        ticks = [int(t) for t in f.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle and iowait
    return (sum(ticks) - idle) / _TICK, sum(ticks) / _TICK


class CpuMeter:
    """Where the CPU went between start() and per_answer(): app, PostgreSQL and this client, per answer."""

    def __init__(self, server_pid: int):
        self.server_pid = server_pid

    def _read(self) -> tuple[float, float, float, tuple[float, float]]:
        times = os.times()
        return (process_cpu_seconds(self.server_pid), postgres_cpu_seconds(), times.user + times.system,
                machine_cpu_seconds())

    def start(self) -> None:
        self.started = self._read()

    def per_answer(self, answers: int) -> dict:
        (app0, pg0, me0, (busy0, all0)), (app1, pg1, me1, (busy1, all1)) = self.started, self._read()
        ms = (lambda seconds: round(seconds * 1e3 / answers, 2)) if answers else (lambda seconds: None)
        return {"app_ms": ms(app1 - app0), "postgresql_ms": ms(pg1 - pg0), "client_ms": ms(me1 - me0),
                "machine_busy": round((busy1 - busy0) / (all1 - all0), 3) if all1 > all0 else None}


async def page_load(users: list[httpx.AsyncClient], paths: list[str], seconds: float, warmup: float,
                    cpu: CpuMeter | None = None) -> dict:
    """Latency percentiles, answers per second and errors of `users` requesting `paths` in turn; CPU per answer."""
    turns = [itertools.count(k) for k in range(len(users))]  # user k starts at path k: not all on one row

    def next_path(k: int) -> str:
        return paths[next(turns[k]) % len(paths)]

    await closed_loop(users, next_path, warmup)
    if cpu is not None:
        cpu.start()
    tally, elapsed = await closed_loop(users, next_path, seconds)
    ok = tally.statuses[200]
    cpu_per_answer = cpu.per_answer(ok) if cpu is not None else None
    errors = sum(tally.statuses.values()) - ok + sum(tally.failures.values())
    cuts = statistics.quantiles(tally.latencies, n=100, method="inclusive") if len(tally.latencies) > 1 else None
    ms = (lambda q: round(cuts[q - 1] * 1e3, 2)) if cuts else (lambda q: None)
    return {
        "concurrency": len(users), "seconds": round(elapsed, 2), "requests": len(tally.latencies) + sum(
            tally.failures.values()), "ok": ok, "errors": errors,
        "statuses": {str(k): v for k, v in sorted(tally.statuses.items())}, "transport_errors": dict(tally.failures),
        "requests_per_s": round(ok / elapsed, 1),
        "latency_ms": {"p50": ms(50), "p95": ms(95), "p99": ms(99),
                       "max": round(max(tally.latencies) * 1e3, 2) if tally.latencies else None},
        "cpu_per_answer": cpu_per_answer,
    }


def _kib(status: str, field_name: str) -> int:
    match = re.search(rf"^{field_name}:\s+(\d+) kB", status, re.M)
    return int(match.group(1)) if match else 0


def process_rss(pid: int) -> dict:
    """Resident and peak-resident memory (bytes) of `pid`, and the resident memory of its children."""
    status = Path(f"/proc/{pid}/status").read_text()
    children = 0
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        kids = []
    for kid in kids:
        try:
            children += _kib(Path(f"/proc/{kid}/status").read_text(), "VmRSS") * 1024
        except OSError:
            pass  # it ended meanwhile
    return {"rss": _kib(status, "VmRSS") * 1024, "hwm": _kib(status, "VmHWM") * 1024, "children_rss": children}


class MemorySampler:
    """Samples process_rss(pid) every `interval` seconds in the background, tagged with the current phase."""

    def __init__(self, pid: int, interval: float):
        self.pid, self.interval = pid, interval
        self.phase = "idle"
        self.samples: list[dict] = []
        self._started = perf_counter()
        self._task: asyncio.Task | None = None

    def sample(self) -> dict:
        reading = process_rss(self.pid)
        point = {"t": round(perf_counter() - self._started, 2), "phase": self.phase,
                 "rss_mb": round((reading["rss"] + reading["children_rss"]) / 2**20, 1),
                 "hwm_mb": round(reading["hwm"] / 2**20, 1)}
        self.samples.append(point)
        return point

    async def _run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.interval)

    def __enter__(self) -> "MemorySampler":
        # From here VmHWM is the peak of the load alone, not of start-up and the sign-ins' Argon2 (Linux >= 4.0).
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc) -> None:
        self._task.cancel()

    def summary(self, after_load: dict, idle: dict) -> dict:
        loaded = [s["rss_mb"] for s in self.samples if s["phase"] not in ("idle", "after")] or [idle["rss_mb"]]
        return {"before_load_mb": idle["rss_mb"], "before_load_kernel_peak_mb": idle["hwm_mb"],
                "peak_mb": max(max(loaded), after_load["hwm_mb"]), "sampled_peak_mb": max(loaded),
                "kernel_peak_mb": after_load["hwm_mb"], "after_load_mb": after_load["rss_mb"],
                "interval_s": self.interval, "samples": self.samples}
