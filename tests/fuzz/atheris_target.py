"""Coverage-guided fuzz target (atheris / libFuzzer) over normalize, filters and encoding.

Each input is one raw message: its first byte picks how it arrives (plain body, wrapped in an SNS notification,
or as Kafka binary mode with ``ce_*`` headers taken from a JSON object at the start of the body), the rest is
the body; or, with the first byte ``q``, the rest is a CESQL expression (``check_cesql``: a parse error or a
value). The properties are those of ``tests/fuzz/harness.py``; a broken one is an uncaught exception, which
libFuzzer reports with the input saved as ``crash-<sha1>`` under ``-artifact_prefix``.

By hand (``make fuzz``, FUZZ_SECONDS=600 for ten minutes)::

    python -m tests.fuzz.atheris_target -max_total_time=600 -artifact_prefix=/tmp/fuzz- /tmp/fuzz-corpus

``tests.fuzz.seeds`` writes the starting inputs (every corpus event in each arrival form) and the dictionary.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import atheris

with atheris.instrument_imports(include=["bridge"]):
    from bridge import jsonutil
    from tests.fuzz.harness import check_cesql, check_message

from tests.fuzz.seeds import seed_corpus, write_dictionary


def _headers(body: bytes) -> tuple[dict[str, bytes], bytes]:
    """Binary mode: a leading JSON object of header names to texts, then a newline, then the record value."""
    head, _, value = body.partition(b"\n")
    try:
        parsed: Any = jsonutil.loads(head)
    except (jsonutil.JSONDecodeError, UnicodeDecodeError):
        return {"ce_specversion": b"1.0"}, body
    if type(parsed) is not dict:
        return {"ce_specversion": b"1.0"}, body
    headers = {str(k): v.encode("utf-8", "surrogatepass") if isinstance(v, str) else json.dumps(v).encode()
               for k, v in parsed.items()}
    headers.setdefault("ce_specversion", b"1.0")
    return headers, value


def fuzz_one_input(data: bytes) -> None:
    mode, body = data[:1], data[1:]
    if mode == b"s":
        message = body.decode("utf-8", errors="surrogateescape")
        check_message(json.dumps({"Type": "Notification", "Message": message}).encode("utf-8", "surrogateescape"))
    elif mode == b"q":
        check_cesql(body.decode("utf-8", errors="surrogateescape"))
    elif mode == b"h":
        headers, value = _headers(body)
        check_message(value, headers)
    else:
        check_message(body)


def main(argv: list[str]) -> None:
    atheris.Setup(argv, fuzz_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--seed":
        out = Path(sys.argv[2])
        print(f"{seed_corpus(out)} seed inputs in {out}")
        write_dictionary(out.parent / "fuzz.dict")
        sys.exit(0)
    main(sys.argv)
