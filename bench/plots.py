"""The runner's PNG plots of one results.json (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend is chosen first)

PAGE_LABELS = {"list": "exception list", "detail": "exception detail", "dashboard": "dashboard (my work)"}


def _save(fig, out: Path, name: str, title: str) -> Path:
    fig.suptitle(title)
    fig.tight_layout()
    path = out / name
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def latency(results: dict, out: Path) -> Path:
    http = results["figures"]["http"]
    fig, axes = plt.subplots(1, len(http), figsize=(5 * len(http), 4), sharey=True)
    for ax, (page, runs) in zip(axes, http.items()):
        levels = [r["concurrency"] for r in runs]
        for q in ("p50", "p95", "p99"):
            ax.plot(levels, [r["latency_ms"][q] for r in runs], marker="o", label=q)
        if page == "list":
            ax.axhline(results["targets"]["list_p95_ms_at_16"]["target"], color="red", linestyle="--",
                       label="target p95 at 16")
        ax.set_xscale("log", base=2)
        ax.set_xticks(levels, [str(c) for c in levels])
        ax.set_title(PAGE_LABELS.get(page, page))
        ax.set_xlabel("concurrent users")
        ax.grid(alpha=0.3)
        ax.legend()
    axes[0].set_ylabel("latency (ms)")
    return _save(fig, out, "http_latency.png", "HTTP latency percentiles vs concurrency")


def throughput(results: dict, out: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4))
    for page, runs in results["figures"]["http"].items():
        levels = [r["concurrency"] for r in runs]
        ax.plot(levels, [r["requests_per_s"] for r in runs], marker="o", label=PAGE_LABELS.get(page, page))
    ax.set_xscale("log", base=2)
    ax.set_xticks(levels, [str(c) for c in levels])
    ax.set_xlabel("concurrent users")
    ax.set_ylabel("answers per second (200 only)")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, out, "http_throughput.png", "HTTP requests/s vs concurrency")


def _bars(ax, labels: list[str], values: list[float]) -> None:
    bars = ax.bar(labels, values, color=["#4c72b0", "#dd8452", "#55a868", "#c44e52"][:len(values)])
    ax.bar_label(bars, labels=[f"{v:,.0f}" for v in values])


def appends(results: dict, out: Path) -> Path:
    a = results["figures"]["audit_appends"]
    fig, ax = plt.subplots(figsize=(7, 4))
    keys = ["one_tenant_chained", "one_tenant_plain", "many_tenants_chained", "many_tenants_plain"]
    tenants = a["many_tenants_chained"]["tenants"]
    _bars(ax, ["1 tenant\nchained", "1 tenant\nplain insert", f"{tenants} tenants\nchained",
               f"{tenants} tenants\nplain insert"], [a[k]["per_s"] for k in keys])
    ax.axhline(results["targets"]["one_tenant_appends_per_s"]["target"], color="red", linestyle="--",
               label="target, 1 tenant chained")
    ax.set_ylabel("appends per second (committed transactions)")
    ax.legend()
    return _save(fig, out, "audit_appends.png", f"Audit appends/s, {a['writers']} writers")


def verify(results: dict, out: Path) -> Path:
    v = results["figures"]["verify"]
    fig, ax = plt.subplots(figsize=(7, 4))
    full, fast = v["full"], v["from_anchor"]
    _bars(ax, ["full walk\n(rows recomputed/s)", "from last anchor\n(rows recomputed/s)",
               "from last anchor\n(chain rows vouched/s)"],
          [full["rows_walked_per_s"], fast["rows_walked_per_s"], fast["rows_per_s"]])
    ax.axhline(results["targets"]["verify_full_rows_per_s"]["target"], color="red", linestyle="--",
               label="target, full walk")
    ax.set_yscale("log")
    ax.set_ylabel("rows per second (log)")
    ax.legend()
    return _save(fig, out, "audit_verify.png",
                 f"Verify a {v['rows']:,}-row chain ({full['seconds']} s full, {fast['seconds']} s from anchor)")


def memory(results: dict, out: Path) -> Path:
    m = results["figures"]["memory"]
    fig, ax = plt.subplots(figsize=(9, 4))
    samples = m["samples"]
    ax.plot([s["t"] for s in samples], [s["rss_mb"] for s in samples], label="resident (VmRSS)")
    ax.axhline(results["targets"]["app_memory_mb"]["target"], color="red", linestyle="--", label="target")
    # Each phase's name at its start.
    previous = None
    for s in samples:
        if s["phase"] != previous:
            ax.axvline(s["t"], color="grey", alpha=0.2)
            ax.text(s["t"], 5, s["phase"], rotation=90, fontsize=6, va="bottom")
            previous = s["phase"]
    ax.set_ylim(0, max(results["targets"]["app_memory_mb"]["target"], m["peak_mb"]) * 1.1)
    ax.axhline(m["peak_mb"], color="grey", linestyle=":", label=f"peak under load ({m['peak_mb']} MB)")
    ax.set_xlabel("seconds since the load began")
    ax.set_ylabel("MB")
    ax.legend(loc="upper left")
    return _save(fig, out, "app_memory.png", "exceptao serve resident memory under the HTTP load")


def draw_all(results: dict, out: Path) -> list[Path]:
    return [draw(results, out) for draw in (latency, throughput, appends, verify, memory)]
