"""The ``bridge`` command line (docs/design.md, "Command line"): run, replay, normalize, test-filter, cesql,
check-config, state, redrive. Commands parse their arguments here; their logic lives in its own modules."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import yaml

from bridge import jsonutil

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2


def _open_in(name: str) -> IO[bytes]:
    return sys.stdin.buffer if name == "-" else open(name, "rb")


def _open_out(name: str) -> IO[bytes]:
    return sys.stdout.buffer if name == "-" else open(name, "wb")


def _lines(stream: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    """Every line is one message body, an empty or blank one too: it ends as it would on a broker (dead-lettered
    with its reason), never skipped."""
    for n, line in enumerate(stream, 1):
        yield n, line.rstrip(b"\r\n")


def _load_cfg(path: str | None) -> Any:
    from bridge.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return None


async def _replay(cfg: Any, src: IO[bytes], out: IO[bytes], batch_size: int = 1000) -> int:
    from bridge.app import build_pipeline
    from bridge.model import RawMessage, SourceBatch
    from bridge.sinks.jsonl import JsonlSink

    sink = JsonlSink(out)
    pipeline = build_pipeline(cfg, sink)
    try:
        batch: list[RawMessage] = []
        for n, body in _lines(src):
            batch.append(RawMessage(body, {}, "replay", f"line {n}"))
            if len(batch) >= batch_size:
                await pipeline.submit(SourceBatch(batch, None, "replay"))
                pipeline.tick()
                batch = []
        if batch:
            await pipeline.submit(SourceBatch(batch, None, "replay"))
        await pipeline.flush()
    finally:
        await pipeline.close(grace=5.0)
        if pipeline.dedup is not None:
            await pipeline.dedup.store.close()
    return EXIT_OK


def cmd_replay(args: argparse.Namespace) -> int:
    cfg = _load_cfg(args.config)
    if cfg is None:
        return EXIT_INVALID
    src = _open_in(args.input)
    out = _open_out(args.output)
    try:
        return asyncio.run(_replay(cfg, src, out))
    finally:
        if src is not sys.stdin.buffer:
            src.close()
        if out is not sys.stdout.buffer:
            out.close()


def cmd_normalize(args: argparse.Namespace) -> int:
    from bridge.model import RawMessage
    from bridge.normalize import normalize_all

    src = _open_in(args.file)
    out = sys.stdout.buffer
    failed = 0
    try:
        for n, body in _lines(src):
            events, errors = normalize_all(RawMessage(body, {}, "normalize", f"line {n}"))
            for ev in events:
                out.write(ev.to_json() + b"\n")
            for err in errors:
                failed += 1
                print(f"line {n}: {getattr(err, 'reason', err)}", file=sys.stderr)
    finally:
        out.flush()
        if src is not sys.stdin.buffer:
            src.close()
    return EXIT_INVALID if failed else EXIT_OK


def _read_doc(path: str, what: str) -> Any:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SystemExit(f"error: cannot read {what} {path}: {exc.strerror}") from None
    try:
        return jsonutil.loads(text)
    except jsonutil.JSONDecodeError:
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise SystemExit(f"error: {what} {path} is neither JSON nor YAML: {exc}") from None


def cmd_test_filter(args: argparse.Namespace) -> int:
    from bridge.filters import FilterError, compile_filter

    spec = _read_doc(args.filter, "filter")
    event = _read_doc(args.event, "event")
    try:
        flt = compile_filter(spec, "auto", "")
    except FilterError as exc:
        print(f"error: invalid filter: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.canonical:
        from bridge.model import RawMessage
        from bridge.normalize import normalize

        try:
            events = normalize(RawMessage(jsonutil.dumps(event)))
        except Exception as exc:
            print(f"error: event does not normalize: {getattr(exc, 'reason', exc)}", file=sys.stderr)
            return EXIT_USAGE
        result = any(flt.matches(ev.to_dict()) for ev in events)
    else:
        if not isinstance(event, dict):
            print("error: the event must be a JSON object", file=sys.stderr)
            return EXIT_USAGE
        result = flt.matches(event)
    print("true" if result else "false")
    return EXIT_OK


def cmd_cesql(args: argparse.Namespace) -> int:
    """One JSON object on one line: ``{"result": VALUE, "error": KIND|null}``; a parse error adds ``message``
    (``result`` null) and exits 2. The reason of an evaluation error goes to stderr."""
    from bridge.filters.cesql import PARSE, CesqlParseError, compile_expression

    def emit(doc: dict[str, Any]) -> None:
        sys.stdout.write(jsonutil.dumps(doc).decode() + "\n")

    try:
        expression = compile_expression(args.expression)
    except CesqlParseError as exc:
        emit({"result": None, "error": PARSE, "message": str(exc)})
        return EXIT_USAGE
    try:
        text = sys.stdin.buffer.read() if args.event == "-" else Path(args.event).read_bytes()
        event = jsonutil.loads(text)
    except OSError as exc:
        print(f"error: cannot read event {args.event}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    except (jsonutil.JSONDecodeError, UnicodeDecodeError, ValueError) as exc:
        print(f"error: event {args.event} is not JSON: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not isinstance(event, dict):
        print("error: the event must be one CloudEvent, a JSON object", file=sys.stderr)
        return EXIT_USAGE
    value, kind, detail = expression.explain(event)
    emit({"result": value, "error": kind})
    if detail is not None:
        print(f"{kind}: {detail}", file=sys.stderr)
    return EXIT_OK


def cmd_check_config(args: argparse.Namespace) -> int:
    from bridge.config import ConfigError, load_config

    try:
        cfg = load_config(args.file)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_INVALID
    names = ", ".join(f"{s.type}:{s.name}" for s in cfg.sources) or "none (bridge run uses Kafka localhost:9092)"
    print(f"{args.file}: OK")
    print(f"  sources: {names}")
    routes = (f"{r.name} -> {r.topic}" + (f" (changes_only: {', '.join(r.state_attributes)})"
                                          if r.changes_only else "") for r in cfg.routes)
    print(f"  routes: {', '.join(routes)}")
    print(f"  dead-letter topic: {cfg.deadletter.topic}")
    print(f"  state topic: {cfg.state.topic or 'none'}")
    dedup = f"{cfg.dedup.store}, {cfg.dedup.window_seconds:g}s" if cfg.dedup.enabled else "off"
    print(f"  dedup: {dedup}")
    reorder = (f"max_delay {cfg.reorder.max_delay_ms} ms, late {cfg.reorder.late_policy}"
               if cfg.reorder.enabled else "off")
    print(f"  reorder: {reorder}")
    print(f"  trust: {_trust_summary(cfg.trust)}")
    return EXIT_OK


def _trust_summary(trust: Any) -> str:
    if not trust.configured:
        return "not configured (events from every workspace, account and source are accepted)"

    def lists(t: Any) -> str:
        names = ("azure_workspaces", "aws_accounts", "aws_regions", "event_sources")
        given = [f"{n} {len(getattr(t, n))}" for n in names if getattr(t, n) is not None]
        return ", ".join(given) or "none"

    per_source = "; ".join(f"{name}: {lists(t)}" for name, t in trust.sources.items())
    return f"{lists(trust)}" + (f"; per source: {per_source}" if per_source else "")


def cmd_state(args: argparse.Namespace) -> int:
    from bridge.tools.state_view import Query, show, split_values
    from bridge.tools.terminal import UsageError, parse_when
    from bridge.tools.topic_range import TopicMissing, client_settings

    cfg = _load_cfg(args.config) if args.config else None
    if args.config and cfg is None:
        return EXIT_INVALID
    topic = args.topic or (cfg.state.topic if cfg is not None else None)
    if not topic:
        print("error: no state topic: set state.topic in the config (--config) or pass --topic", file=sys.stderr)
        return EXIT_USAGE
    try:
        query = Query(split_values(args.status), split_values(args.platform), split_values(args.type, lower=False),
                      parse_when(args.since) if args.since else None)
        settings = client_settings(cfg.sink if cfg is not None else None, args.bootstrap_servers)
        return asyncio.run(show(settings, topic, query, as_json=args.json, out=sys.stdout, err=sys.stderr))
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # no such topic, a broker that does not answer: said plainly, not as a traceback
        print(f"error: {exc if isinstance(exc, TopicMissing) else f'{type(exc).__name__}: {exc}'}", file=sys.stderr)
        return EXIT_INVALID


def cmd_redrive(args: argparse.Namespace) -> int:
    import re
    import time

    from bridge.tools.redrive import Options, redrive, report
    from bridge.tools.terminal import UsageError, parse_when
    from bridge.tools.topic_range import TopicMissing

    cfg = _load_cfg(args.config)
    if cfg is None:
        return EXIT_INVALID
    try:
        options = Options(
            topic=args.topic or cfg.deadletter.topic,
            since=parse_when(args.since) if args.since else None,
            until=parse_when(args.until) if args.until else None,
            reason=re.compile(args.reason) if args.reason else None,
            dry_run=args.dry_run, force=args.force, batch_size=args.batch_size,
            bootstrap_servers=args.bootstrap_servers,
        )
    except (UsageError, re.error) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.dry_run:  # nothing is dead-lettered for real: the pipeline's dead-letter warnings would mislead
        from bridge.logs import configure

        configure("error", "console")
    if args.batch_size < 1:
        print("error: --batch-size must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    started = time.monotonic()
    try:
        summary = asyncio.run(redrive(cfg, options, out=sys.stdout if args.dry_run else None))
    except KeyboardInterrupt:
        print("interrupted: the dead letters already handled are remembered; run it again to go on", file=sys.stderr)
        return 130
    except TopicMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except Exception as exc:  # a broker or store that does not answer: said plainly, not as a traceback
        print(f"error: redrive stopped: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_INVALID
    print(report(summary, options, time.monotonic() - started))
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    cfg = _load_cfg(args.config)
    if cfg is None:
        return EXIT_INVALID
    from bridge.daemon import run_daemon

    return run_daemon(cfg.with_run_defaults())


def _kafka_args(p: argparse.ArgumentParser, topic_help: str) -> None:
    p.add_argument("--config", help="config file: the sink's Kafka connection (TLS, SASL) and topics")
    p.add_argument("--bootstrap-servers", help="host:port[,...] (default: the config's sink, else localhost:9092)")
    p.add_argument("--topic", help=topic_help)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bridge", description="ML Event Bridge: Azure ML and SageMaker events, "
                                "normalized to CloudEvents, deduplicated, reordered, filtered, routed to Kafka.")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run the daemon (sources -> pipeline -> Kafka; /healthz /readyz /metrics)")
    r.add_argument("--config", help="config file (YAML); default: Kafka on localhost:9092")
    r.set_defaults(func=cmd_run)

    rp = sub.add_parser("replay", help="run the pipeline over JSON Lines instead of brokers")
    rp.add_argument("--config", help="config file (YAML); default: dedup+reorder on, one route 'all'")
    rp.add_argument("--input", required=True, help="JSON Lines file of raw message bodies, or - for stdin")
    rp.add_argument("--output", default="-", help="output JSON Lines file, or - for stdout (default)")
    rp.set_defaults(func=cmd_replay)

    n = sub.add_parser("normalize", help="raw message bodies in, canonical CloudEvents out (JSON Lines)")
    n.add_argument("file", nargs="?", default="-", help="input JSON Lines file, or - for stdin (default)")
    n.set_defaults(func=cmd_normalize)

    t = sub.add_parser("test-filter", help="print true/false: does the filter match the event?")
    t.add_argument("--filter", required=True,
                   help='filter file: EventBridge pattern, Event Grid filter or {"cesql": "EXPRESSION"}')
    t.add_argument("--event", required=True, help="event file (JSON)")
    t.add_argument("--canonical", action="store_true", help="normalize the event first and match the canonical form")
    t.set_defaults(func=cmd_test_filter)

    q = sub.add_parser("cesql", help='evaluate a CloudEvents SQL expression on an event: {"result": ..., "error": ...}')
    q.add_argument("expression", help="the CESQL v1 expression, e.g. \"status = 'failed' AND platform = 'sagemaker'\"")
    q.add_argument("--event", required=True, help="a CloudEvent in JSON format (file, or - for stdin)")
    q.set_defaults(func=cmd_cesql)

    c = sub.add_parser("check-config", help="validate a config file and explain every error")
    c.add_argument("file")
    c.set_defaults(func=cmd_check_config)

    s = sub.add_parser("state", help="the current-state topic as a table: what is running, failed, deployed")
    _kafka_args(s, "state topic (default: state.topic of the config)")
    s.add_argument("--status", action="append", help="only these statuses: failed, running, ... (repeat or a,b)")
    s.add_argument("--platform", action="append", help="only azureml or sagemaker")
    s.add_argument("--type", action="append", help="only these canonical types; patterns too: 'ml.job.*'")
    s.add_argument("--since", help="only events since: a duration back from now (30m, 2h, 7d) or a time")
    s.add_argument("--json", action="store_true", help="JSON Lines, one CloudEvent per subject, for scripts")
    s.set_defaults(func=cmd_state)

    d = sub.add_parser("redrive", help="re-run dead letters through the current config (after a fix)")
    d.add_argument("--config", help="config file (YAML): pipeline, sink and stores the dead letters go through")
    d.add_argument("--from", dest="topic", help="dead-letter topic (default: deadletter.topic of the config)")
    d.add_argument("--bootstrap-servers", help="where the dead-letter topic is (default: the config's sink)")
    d.add_argument("--since", help="dead letters written since: a duration (30m, 2h, 7d) or a time")
    d.add_argument("--until", help="dead letters written until: a duration back from now or a time")
    d.add_argument("--reason", help="only dead letters whose dlq_reason matches this regular expression")
    d.add_argument("--dry-run", action="store_true", help="print what would happen; publish and record nothing")
    d.add_argument("--force", action="store_true",
                   help="also dead letters already redriven, or that failed under this same config")
    d.add_argument("--batch-size", type=int, default=500, help="dead letters per pipeline flush (500)")
    d.set_defaults(func=cmd_redrive)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command != "run":  # logs go to stderr, never into the JSON Lines on stdout
        from bridge.logs import configure

        configure("warning", "console")
    rc: int = args.func(args)
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
