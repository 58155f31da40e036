"""Smoke run of the benchmark (bench/): every phase on the session Kafka broker with a tiny input, the
throughput phases on a tansu of its own (``--broker tansu``).

No timing assertions: these tests prove the benchmark code runs end to end, that its figures are consistent
with its input (counts of records, duplicates, dead letters, memory fill sizes) and that every producer of a
run has the broker's family (idempotent on Apache Kafka, not on tansu).
"""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path

import orjson
import pytest
import yaml

from bench.brokers import wrap
from bench.data import generate
from bench.report import render_table
from bench.run import build_parser, main, run, write_results
from bridge.model import RawMessage
from bridge.normalize import normalize_all
from testbed.apache_kafka import ApacheKafka


def test_generate_makes_the_requested_mix(shared_dir: Path) -> None:
    """The generator yields the asked number of records with the asked duplicates, malformed and subjects."""
    ds = generate(2000, subjects=100, corpus=shared_dir / "corpus")
    assert len(ds.records) == 2000
    assert ds.duplicates == 100 and ds.malformed == 2 and ds.subjects == 100
    assert ds.out_of_order == round(ds.unique * 0.10)
    ids = Counter(i for i in ds.ids if i is not None)
    assert sum(n - 1 for n in ids.values()) == ds.duplicates
    assert sum(1 for i in ds.ids if i is None) == ds.malformed
    subjects: set[tuple[str, str]] = set()
    failed = 0
    for _, body in ds.records:
        events, errors = normalize_all(RawMessage(body))
        failed += bool(errors)
        subjects.update((ev.source, ev.subject) for ev in events)
    assert failed == ds.malformed
    assert len(subjects) == ds.subjects
    assert 900 < ds.summary()["mean_bytes"] < 1300


async def test_bench_smoke_run(kafka: ApacheKafka, tmp_path: Path) -> None:
    """A tiny full benchmark run on Apache Kafka produces every figure, consistent with the input it generated,
    with idempotent producers in the pass-through and the bridge."""
    prefix = f"smoke-{uuid.uuid4().hex[:8]}"
    args = build_parser().parse_args([
        "--events", "3000", "--subjects", "300", "--latency-rate", "1500", "--latency-seconds", "1",
        "--dedup-ids", "20000", "--reorder-subjects", "500", "--reorder-events", "1000",
        "--repeat", "1", "--prefix", prefix, "--workdir", str(tmp_path),
    ])
    results = await run(args, broker=wrap(kafka))
    assert results["broker"]["name"] == "kafka" and results["broker"]["label"] == f"Apache Kafka {kafka.version}"
    assert results["broker"]["producers"] == {"acks": "all", "enable_idempotence": True}

    data = results["data"]
    assert data["records"] == 3000 and data["duplicates"] == 150 and data["malformed"] == 3
    assert results["baseline"]["output_records"] == 3000
    assert results["baseline"]["rate"] > 0 and results["baseline"]["idempotent"] is True

    bridge = results["bridge"]
    counters = bridge["counters"]
    assert bridge["exit_code"] == 0 and bridge["sink_idempotent"] is True
    assert counters["messages_in"] == 3000
    assert counters["duplicates_dropped"] == 150
    assert counters["deadlettered"] == 3
    outputs = bridge["output_records"]
    assert outputs[f"{prefix}.deadletter.0"] == 3
    assert outputs[f"{prefix}.jobs.0"] + outputs[f"{prefix}.models.0"] == counters["events_out"]
    assert bridge["gcstats"]["process_seconds"] > 0
    assert bridge["rate"] > 0 and bridge["peak_rss_mb"] > 0
    assert results["ratio"] > 0

    eos = results["eos"]
    assert eos["delivery"] == {"guarantee": "exactly_once"}
    assert eos["bridge"]["exit_code"] == 0 and eos["bridge"]["counters"]["transactions"] > 0
    eos_outputs = {t.replace(".eos.", "."): n for t, n in eos["bridge"]["output_records"].items()}
    assert eos_outputs == outputs  # in transactions: the same records, each once (counted, not by offset)
    assert eos["latency"]["measured_output_records"] > 0

    assert results["latency"]["measured_output_records"] > 0
    assert results["latency"]["added_ms"]["p99"] >= results["latency"]["added_ms"]["p50"]
    assert results["latency_baseline"]["measured_output_records"] > 0
    assert results["latency"]["source_fetch_max_wait_ms"] == results["latency_baseline"]["fetch_max_wait_ms"] == 500

    memory = results["memory"]
    assert memory["dedup"]["ids"] == 20000
    assert memory["reorder"]["events"] == 1000 and memory["reorder"]["subjects"] == 500

    table = render_table(results)
    assert "bridge: full pipeline" in table and "dedup window of 20,000 ids" in table
    assert table.startswith(f"broker: Apache Kafka {kafka.version}, started in ")
    assert f"one bare broker hop p50 / p99 (Apache Kafka {kafka.version})" in table
    saved_to = write_results(results, args)
    assert saved_to == tmp_path / "results-kafka.json"
    assert orjson.loads(saved_to.read_bytes())["bridge"]["counters"]["messages_in"] == 3000


@pytest.mark.broker
def test_bench_on_tansu_runs_every_producer_without_idempotence(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """``--broker tansu`` starts a tansu of its own and runs the pass-through and the bridge there, both
    without idempotence (tansu has none), and prints the table naming the broker."""
    assert main(["--broker", "tansu", "--events", "1500", "--subjects", "150", "--repeat", "1", "--skip-latency",
                 "--skip-memory", "--workdir", str(tmp_path)]) == 0
    results = orjson.loads((tmp_path / "results-tansu.json").read_bytes())
    assert results["broker"]["name"] == "tansu" and results["broker"]["producers"]["enable_idempotence"] is False
    assert results["baseline"]["output_records"] == 1500 and results["baseline"]["idempotent"] is False
    bridge = results["bridge"]
    assert bridge["counters"]["messages_in"] == 1500 and bridge["exit_code"] == 0
    assert bridge["sink_idempotent"] is False
    cfg = yaml.safe_load((tmp_path / "tansu" / "bridge-throughput.yaml").read_text())
    assert cfg["sink"]["enable_idempotence"] is False
    assert results["ratio"] > 0
    out = capsys.readouterr().out
    assert out.startswith(f"broker: {results['broker']['label']}; producers: acks=all, not idempotent")
    assert "ratio bridge / baseline" in out and "results-tansu.json" in out


@pytest.mark.broker
def test_backlog_bench_drains_small_backlogs_in_a_memory_cgroup(tmp_path: Path) -> None:
    """bench.backlog (cgroup mode, as root) drains a small 1 KB and a small large-event backlog under its limit on
    Apache Kafka, with the bridge reading its budget from the cgroup, and reports each run."""
    import subprocess
    import sys

    res = subprocess.run(
        [sys.executable, "-m", "bench.backlog", "--mode", "cgroup", "--small", "2000", "--large", "30",
         "--large-kb", "50", "--memory-mb", "512", "--timeout", "120", "--workdir", str(tmp_path)],
        capture_output=True, timeout=400,
    )
    assert res.returncode == 0, res.stderr.decode()[-3000:]
    runs = [orjson.loads(line) for line in res.stdout.splitlines()]
    assert [(r["backlog"], r["mode"], r["reached"], r["oom_killed"]) for r in runs] == [
        ("1kb", "cgroup", True, False), ("50kb", "cgroup", True, False)]
    assert all(r["broker"].startswith("Apache Kafka ") for r in runs)  # --broker auto: a JDK is there
    assert all(0 < r["peak_mib"] < 512 for r in runs)
    budget = next(orjson.loads(line) for line in (tmp_path / "1kb" / "backlog.log").read_text().splitlines()
                  if '"daemon.memory_budget"' in line)
    assert (budget["origin"], budget["memory_mb"]) == ("cgroup", 512)


def test_stage_costs_cover_every_stage() -> None:
    """bench.stages runs every stage of the pipeline on a small input and reports a cost for each, and the two
    equivalent filters (CESQL, EventBridge) agree on every event (measure raises otherwise)."""
    from bench.stages import measure

    results = measure(events=2000, batch=200)
    assert set(results) == {
        "orjson.loads (the floor of parsing)", "jsonutil.loads", "normalize_all (parse and shape)",
        "route (two filters)", "encode at admission", "admission (normalize, dedup, route, encode, records)",
        "reorder push and drain", "records for the sink (key, CloudEvents headers)", "aiokafka BatchBuilder.append",
        "filter: EventBridge pattern, 3 fields", "filter: CESQL, 3 clauses",
        "whole pipeline, submit to acked (in-memory sink)", "the same with changes_only and a state topic",
    }
    assert all(us > 0 for us in results.values())
