"""``python -m bench.run``: the whole benchmark in one run on a local broker (see BENCHMARKS.md).

The broker is Apache Kafka (``--broker kafka``, the default), tansu (``--broker tansu``) or each in turn
(``--broker both``: two runs, two tables, each ratio from its own run); bench/brokers.py gives every producer of
a run the broker's family (idempotent on Apache Kafka, not on tansu). Phases: generate the input; pre-produce
it to the input topic (untimed); the raw aiokafka pass-through baseline; the bridge at full speed (default
config); the same bridge with ``delivery.guarantee: exactly_once`` (on Apache Kafka: transactions); the bridge at
half that rate with a small reorder delay (latency), also exactly once; memory scaling in a fresh process
(broker-independent: once with ``both``). Prints a table per broker and writes
``.bench/results-<broker>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from bench import whatif
from bench.bridge_proc import Topics
from bench.brokers import BROKERS, Broker, started
from bench.data import ROOT, Dataset, generate
from bench.kafka import produce_all
from bench.latency import run_latency, run_latency_baseline, run_latency_hop
from bench.profile import render as render_profile
from bench.profile import summarize
from bench.report import render_table
from bench.throughput import run_baseline, run_bridge

# issue 8's targets (the rate target of the first benchmark issue is kept for comparison with earlier runs)
TARGETS = {"rate": 100_000, "ratio": 0.5, "p50_added_over_baseline_ms": 10.0, "peak_rss_mb": 400.0,
           "held_bytes_per_event": 1536.0, "dedup_mb": 150.0}


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram_gb": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def memory_phase(ids: int, subjects: int, events: int) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.memory", "--ids", str(ids), "--subjects", str(subjects),
           "--events", str(events)]
    out = subprocess.run(cmd, capture_output=True, check=True, timeout=900)
    result: dict[str, Any] = orjson.loads(out.stdout.splitlines()[-1])
    return result


async def _phases(args: argparse.Namespace, broker: Broker, ds: Dataset, results: dict[str, Any],
                  workdir: Path) -> None:
    n = len(ds.records)
    pre = args.prefix
    main = Topics.named(pre)
    broker.create_topic(main.input, args.partitions)
    secs = await produce_all(broker.bootstrap, main.input, ds.records, args.partitions, idempotent=broker.idempotent)
    results["preproduce"] = {"seconds": round(secs, 2), "rate": round(n / secs)}
    _say(f"pre-produced {n} records to {main.input} in {secs:.1f}s ({n / secs:,.0f}/s)")

    # alternate baseline and bridge runs so that a noisy moment on the machine hits both; report medians
    raw = workdir / "profile.raw" if args.profile else None
    names = ["gcstats", *([args.whatif] if args.whatif else [])]
    prelude = whatif.prelude(",".join(names))
    base_runs: list[dict[str, Any]] = []
    bridge_runs: list[dict[str, Any]] = []
    for i in range(args.repeat):
        if not args.skip_baseline:
            out = f"{pre}.baseline.out.{i}"
            broker.create_topic(out, args.partitions)
            base_runs.append(await run_baseline(broker, main.input, out, n, f"{pre}-baseline-{i}"))
            _say(f"baseline run {i + 1}: {base_runs[-1]['rate']:,.0f} records/s")
        topics = Topics(main.input, f"{pre}.jobs.{i}", f"{pre}.models.{i}", f"{pre}.deadletter.{i}")
        for t in topics.outputs:
            broker.create_topic(t, args.partitions)
        bridge_runs.append(await run_bridge(broker, topics, n, workdir, profile=raw if i == 0 else None,
                                            prelude=prelude, group=f"{pre}-throughput-{i}", routes=args.routes))
        b = bridge_runs[-1]
        _say(f"bridge run {i + 1}: {b['rate']:,.0f} records/s, peak RSS {b['peak_rss_mb']} MB")
    if raw is not None:
        results["profile"] = summarize(raw)
        (workdir / "profile.txt").write_text(render_profile(results["profile"]) + "\n")
        _say(f"profile (bridge run 1): {workdir / 'profile.txt'}")
    results["bridge"] = _median(bridge_runs)
    results["bridge_rates"] = [round(r["rate"]) for r in bridge_runs]
    eos = _eos_delivery(args, broker)
    if eos is not None:  # the same input through the same config, in Kafka transactions
        eos_runs: list[dict[str, Any]] = []
        for i in range(args.repeat):
            topics = Topics(main.input, f"{pre}.eos.jobs.{i}", f"{pre}.eos.models.{i}", f"{pre}.eos.deadletter.{i}")
            for t in topics.outputs:
                broker.create_topic(t, args.partitions)
            eos_runs.append(await run_bridge(broker, topics, n, workdir, name="bridge-eos-throughput",
                                             group=f"{pre}-eos-throughput-{i}", delivery=eos))
            _say(f"exactly-once bridge run {i + 1}: {eos_runs[-1]['rate']:,.0f} records/s")
        results["eos"] = {"delivery": eos, "bridge": _median(eos_runs),
                          "bridge_rates": [round(r["rate"]) for r in eos_runs]}
    if base_runs:
        results["baseline"] = _median(base_runs)
        results["baseline_rates"] = [round(r["rate"]) for r in base_runs]
        results["ratio"] = results["bridge"]["rate"] / results["baseline"]["rate"]

    if args.skip_latency:
        return
    rate = args.latency_rate or results["bridge"]["rate"] / 2
    fetch_wait = args.latency_fetch_wait_ms or broker.latency_fetch_wait_ms
    count = min(n, int(rate * args.latency_seconds) + 2000)
    records, ids = ds.records[:count], ds.ids[:count]
    lat = Topics.named(f"{pre}.lat")
    for t in [lat.input, *lat.outputs, f"{pre}.latbase.in", f"{pre}.latbase.out"]:
        broker.create_topic(t, args.partitions)
    if not args.skip_baseline:
        broker.create_topic(f"{pre}.hop", args.partitions)
        results["latency_hop"] = await run_latency_hop(broker, f"{pre}.hop", args.partitions, records, ids, rate)
        _say(f"one broker hop at {rate:,.0f}/s: {results['latency_hop']['end_to_end_ms']}")
        results["latency_baseline"] = await run_latency_baseline(
            broker, f"{pre}.latbase.in", f"{pre}.latbase.out", args.partitions, records, ids, rate,
            fetch_wait_ms=fetch_wait, group=f"{pre}-latency-baseline")
        _say(f"pass-through latency at {rate:,.0f}/s: {results['latency_baseline']['end_to_end_ms']}")
    results["latency"] = await run_latency(
        broker, lat, args.partitions, records, ids, rate, args.latency_delay_ms, workdir,
        fetch_wait_ms=fetch_wait, prelude=prelude, sink_linger_ms=args.latency_sink_linger_ms,
        group=f"{pre}-latency")
    _say(f"bridge latency at {rate:,.0f}/s: added {results['latency']['added_ms']}")
    if eos is not None:
        lat_eos = Topics.named(f"{pre}.lateos")
        for t in [lat_eos.input, *lat_eos.outputs]:
            broker.create_topic(t, args.partitions)
        results["eos"]["latency"] = await run_latency(
            broker, lat_eos, args.partitions, records, ids, rate, args.latency_delay_ms, workdir,
            fetch_wait_ms=fetch_wait, prelude=prelude, sink_linger_ms=args.latency_sink_linger_ms,
            group=f"{pre}-latency-eos", delivery=eos, name="bridge-eos-latency")
        _say(f"exactly-once bridge latency at {rate:,.0f}/s: added {results['eos']['latency']['added_ms']}")


def _eos_delivery(args: argparse.Namespace, broker: Broker) -> dict[str, Any] | None:
    """The delivery section of the exactly-once runs, or None (skipped, or a broker without transactions)."""
    if args.skip_eos or not broker.idempotent:  # tansu has no transactions
        return None
    delivery: dict[str, Any] = {"guarantee": "exactly_once"}
    if args.eos_txn_records:
        delivery["transaction_max_records"] = args.eos_txn_records
    if args.eos_txn_ms:
        delivery["transaction_max_ms"] = args.eos_txn_ms
    return delivery


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median rate (the lower middle one for an even count)."""
    ordered = sorted(runs, key=lambda r: float(r["rate"]))
    return ordered[(len(ordered) - 1) // 2]


async def run(args: argparse.Namespace, broker: Broker | None = None) -> dict[str, Any]:
    """Every phase; on ``broker`` if given (topics and groups named after ``--prefix``), else on a fresh broker
    of ``args.broker`` (``kafka`` or ``tansu``). The bridges' configs and logs go to WORKDIR/<broker>/."""
    workdir = Path(args.workdir) / (broker.name if broker is not None else args.broker)
    await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
    results: dict[str, Any] = {"started": datetime.now(UTC).isoformat(timespec="seconds"),
                               "machine": machine(), "args": dict(vars(args))}
    t0 = time.perf_counter()
    ds = generate(args.events, subjects=args.subjects, seed=args.seed, size=args.event_bytes)
    results["data"] = {**ds.summary(), "generate_seconds": round(time.perf_counter() - t0, 2)}
    _say(f"generated {len(ds.records)} records in {results['data']['generate_seconds']}s: {ds.summary()}")
    if broker is not None:
        results["broker"] = broker.describe()
        await _phases(args, broker, ds, results, workdir)
    else:
        with started(args.broker, workdir) as own:
            results["broker"] = own.describe()
            took = results["broker"]["started_in_s"]
            _say(f"broker: {own.label}" + (f", started in {took} s" if took is not None else ""))
            await _phases(args, own, ds, results, workdir)
    del ds
    if not args.skip_memory:
        results["memory"] = await asyncio.to_thread(memory_phase, args.dedup_ids, args.reorder_subjects,
                                                    args.reorder_events)
        _say(f"memory: {results['memory']}")
    results["targets"] = TARGETS
    results["seconds"] = round(time.perf_counter() - t0, 1)
    return results


def write_results(results: dict[str, Any], args: argparse.Namespace) -> Path:
    """``--output``, else WORKDIR/results-<broker>.json."""
    name = results.get("broker", {}).get("name", args.broker)
    out = Path(args.output) if args.output else Path(args.workdir) / f"results-{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    return out


def _say(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    p.add_argument("--broker", choices=[*BROKERS, "both"], default="kafka",
                   help="Apache Kafka 4.x (default; needs a JDK and make install), tansu, or both one after the "
                   "other (two tables, each ratio from its own run)")
    p.add_argument("--events", type=int, default=200_000, help="input records (default 200000)")
    p.add_argument("--subjects", type=int, default=10_000)
    p.add_argument("--event-bytes", type=int, default=1024,
                   help="size the input events are padded (or trimmed) towards (default 1024)")
    p.add_argument("--routes", type=int, default=2,
                   help="routes of the throughput runs: the two, plus filters on the same fields that match no "
                   "bench event (the cost of a growing filter set; default 2)")
    p.add_argument("--partitions", type=int, default=4, help="partitions of every topic (default 4)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--repeat", type=int, default=3,
                   help="throughput runs of the baseline and of the bridge (the median is reported)")
    p.add_argument("--latency-rate", type=float, default=None,
                   help="events/s (default: half the bridge rate)")
    p.add_argument("--latency-seconds", type=float, default=10.0)
    p.add_argument("--latency-delay-ms", type=int, default=20, help="reorder max_delay of the latency run")
    p.add_argument("--latency-fetch-wait-ms", type=int, default=None,
                   help="fetch_max_wait_ms of the bridge's source and of the pass-through in the latency runs "
                   "(default: 500 on Apache Kafka, the bridge's default; 10 on tansu, which does not wake a "
                   "waiting fetch)")
    p.add_argument("--latency-sink-linger-ms", type=int, default=None,
                   help="what-if: the sink's linger_ms in the latency run (default: the config default, 5)")
    p.add_argument("--dedup-ids", type=int, default=1_000_000)
    p.add_argument("--reorder-subjects", type=int, default=100_000)
    p.add_argument("--reorder-events", type=int, default=200_000)
    p.add_argument("--skip-baseline", action="store_true")
    p.add_argument("--skip-latency", action="store_true")
    p.add_argument("--skip-memory", action="store_true")
    p.add_argument("--skip-eos", action="store_true",
                   help="leave out the exactly-once runs (throughput and latency in Kafka transactions)")
    p.add_argument("--eos-txn-records", type=int, default=None,
                   help="delivery.transaction_max_records of the exactly-once runs (default: the config default)")
    p.add_argument("--eos-txn-ms", type=int, default=None,
                   help="delivery.transaction_max_ms of the exactly-once runs (default: the config default)")
    p.add_argument("--profile", action="store_true",
                   help="attach py-spy to the bridge in the throughput run (writes .bench/profile.txt)")
    p.add_argument("--whatif", default=None, metavar="PATCH[,PATCH]",
                   help="experiment: run the bridge with candidate optimizations applied: "
                   f"{', '.join(whatif.PATCHES)} (see bench/whatif.py)")
    p.add_argument("--prefix", default="bench", help="prefix of topic and consumer group names")
    p.add_argument("--workdir", default=str(ROOT / ".bench"))
    p.add_argument("--output", default=None, help="results JSON of a one-broker run (default "
                   "WORKDIR/results-<broker>.json)")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    names = list(BROKERS) if args.broker == "both" else [args.broker]
    if args.output and len(names) > 1:
        parser.error("--output names one results file: not with --broker both")
    for i, name in enumerate(names):
        # the memory phase does not touch the broker: once is enough
        one = argparse.Namespace(**{**vars(args), "broker": name, "skip_memory": args.skip_memory or i > 0})
        results = asyncio.run(run(one))
        out = write_results(results, one)
        print(("\n" if i else "") + render_table(results), flush=True)
        print(f"\nresults: {out}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
