"""The stdout table of a benchmark run, with each figure checked against the issue's targets."""

from __future__ import annotations

from typing import Any


def _mark(ok: bool | None) -> str:
    return "" if ok is None else ("PASS" if ok else "MISS")


def _rows(r: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    t = r.get("targets", {})
    rows: list[tuple[str, str, str, str]] = []
    base = r.get("baseline")
    bridge = r.get("bridge")
    if base:
        rows.append(("baseline: raw aiokafka pass-through", f"{base['rate']:,.0f} rec/s", "", ""))
        if len(r.get("baseline_rates", [])) > 1:
            rows.append(("  runs (median above)", " / ".join(f"{x:,}" for x in r["baseline_rates"]), "", ""))
    if bridge:
        ok = bridge["rate"] >= t.get("rate", 0)
        rows.append(("bridge: full pipeline, Kafka to Kafka", f"{bridge['rate']:,.0f} rec/s",
                     f">= {t.get('rate', 0):,}", _mark(ok)))
        if len(r.get("bridge_rates", [])) > 1:
            rows.append(("  runs (median above)", " / ".join(f"{x:,}" for x in r["bridge_rates"]), "", ""))
        rows.append(("bridge: wall rate incl. 2 s reorder tail",
                     f"{bridge['wall_rate_incl_reorder_tail']:,.0f} rec/s", "", ""))
    if "ratio" in r:
        rows.append(("ratio bridge / baseline", f"{r['ratio']:.1%}", f">= {t.get('ratio', 0):.0%}",
                     _mark(r["ratio"] >= t.get("ratio", 0))))
    lat = r.get("latency")
    if lat and lat.get("added_ms"):
        p = lat["added_ms"]
        base_lat = r.get("latency_baseline", {}).get("end_to_end_ms")
        rows.append((f"latency at {lat['target_rate']:,}/s: added p50 (minus the reorder hold)", f"{p['p50']:.1f} ms",
                     "", ""))
        if base_lat:
            over = p["p50"] - base_lat["p50"]
            limit = t.get("p50_added_over_baseline_ms", 0)
            rows.append(("  p50 above the raw pass-through's at that rate", f"{over:.1f} ms", f"<= {limit:g} ms",
                         _mark(over <= limit)))
        rows.append(("latency: added p99", f"{p['p99']:.1f} ms", "", ""))
        if base_lat:
            rows.append(("  raw pass-through at the same rate p50 / p99",
                         f"{base_lat['p50']:.1f} / {base_lat['p99']:.1f} ms", "", ""))
        hop = r.get("latency_hop", {}).get("end_to_end_ms")
        if hop:
            rows.append((f"  one bare broker hop p50 / p99 ({_broker_label(r)})",
                         f"{hop['p50']:.1f} / {hop['p99']:.1f} ms", "", ""))
        e = lat["end_to_end_ms"]
        rows.append(("latency: end to end p50 / p99 (incl. hold)",
                     f"{e['p50']:.1f} / {e['p99']:.1f} ms", "", ""))
        rows.append(("reorder hold (max_delay of the latency run)",
                     f"{lat['reorder_max_delay_ms']} ms", "", ""))
        rows.append(("sources' fetch_max_wait_ms in the latency runs", f"{lat['source_fetch_max_wait_ms']} ms", "", ""))
    eos = r.get("eos")
    if eos and bridge:
        b = eos["bridge"]
        d = eos.get("delivery", {})
        size = ", ".join(f"{k.removeprefix('transaction_')}={v}" for k, v in d.items() if k != "guarantee")
        rows.append((f"exactly-once bridge ({size or 'default transactions'})", f"{b['rate']:,.0f} rec/s", "", ""))
        if len(eos.get("bridge_rates", [])) > 1:
            rows.append(("  runs (median above)", " / ".join(f"{x:,}" for x in eos["bridge_rates"]), "", ""))
        rows.append(("  of the at-least-once bridge's rate", f"{b['rate'] / bridge['rate']:.1%}", "", ""))
        if "ratio" in r:
            rows.append(("  ratio exactly-once bridge / baseline", f"{b['rate'] / r['baseline']['rate']:.1%}", "",
                         ""))
        el = eos.get("latency")
        if el and el.get("added_ms") and lat and lat.get("added_ms"):
            rows.append((f"  latency at {el['target_rate']:,}/s: added p50 / p99 (read_committed)",
                         f"{el['added_ms']['p50']:.1f} / {el['added_ms']['p99']:.1f} ms", "", ""))
            rows.append(("  added p50 over the at-least-once bridge's",
                         f"{el['added_ms']['p50'] - lat['added_ms']['p50']:.1f} ms", "", ""))
        rows.append(("  peak RSS, throughput run", f"{b['peak_rss_mb']:.0f} MB", "", ""))
    if bridge:
        limit_rss = t.get("peak_rss_mb", 0)
        rows.append(("bridge peak RSS (VmHWM), throughput run", f"{bridge['peak_rss_mb']:.0f} MB",
                     f"<= {limit_rss:g} MB", _mark(bridge["peak_rss_mb"] <= limit_rss) if limit_rss else ""))
    mem = r.get("memory", {})
    if "dedup" in mem:
        d = mem["dedup"]
        rows.append((f"dedup window of {d['ids']:,} ids", f"{d['delta_mb']:.0f} MB",
                     f"<= {t.get('dedup_mb', 0):g} MB", _mark(d["delta_mb"] <= t.get("dedup_mb", 0))))
    if "reorder" in mem:
        o = mem["reorder"]
        rows.append((f"reorder buffer, {o['events']:,} events / {o['subjects']:,} subjects",
                     f"{o['total_delta_mb']:.0f} MB", "", ""))
        rows.append(("  of which buffer structures", f"{o['buffer_structures_mb']:.0f} MB", "", ""))
        if "bytes_per_event_total" in o:
            per = o["bytes_per_event_total"]
            limit_held = t.get("held_bytes_per_event", 0)
            rows.append((f"  held per event (input {o.get('input_bytes_per_event', 0):,.0f} B)", f"{per:,.0f} B",
                         f"<= {limit_held:,.0f} B", _mark(per <= limit_held)))
    return rows


def _broker_label(r: dict[str, Any]) -> str:
    return str(r.get("broker", {}).get("label", "broker"))


def broker_line(r: dict[str, Any]) -> str:
    """Which broker the run was on and the producer family of every producer in it."""
    b = r.get("broker")
    if not b:
        return "broker: not recorded"
    started = f", started in {b['started_in_s']:.1f} s" if b.get("started_in_s") is not None else ""
    idem = "idempotent" if b["producers"]["enable_idempotence"] else "not idempotent"
    return (f"broker: {b['label']}{started}; producers: acks=all, {idem} (pass-through, load generators and "
            "bridge alike)")


def render_table(r: dict[str, Any]) -> str:
    rows = _rows(r)
    head = ("measure", "value", "target", "")
    widths = [max(len(x[i]) for x in [head, *rows]) for i in range(4)]
    lines = [broker_line(r), "", "  ".join(c.ljust(w) for c, w in zip(head, widths, strict=True)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    m = r.get("machine", {})
    d = r.get("data", {})
    lines.append("")
    lines.append(f"machine: {m.get('nproc')} CPUs, {m.get('cpu')}, {m.get('ram_gb')} GB RAM, "
                 f"Python {m.get('python')}")
    if d:
        lines.append(f"input: {d['records']:,} records, mean {d['mean_bytes']:.0f} B, "
                     f"{d['subjects']:,} subjects, {d['duplicates']:,} duplicates, "
                     f"{d['out_of_order']:,} out of order, {d['malformed']} malformed")
    return "\n".join(lines)
