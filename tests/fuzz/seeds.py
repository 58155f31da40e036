"""Starting inputs and the token dictionary of the atheris target (importable without atheris)."""

from __future__ import annotations

import json
from pathlib import Path

from bridge import jsonutil

MODES = (b"p", b"s", b"h", b"q")  # plain, SNS, headers (binary mode), CESQL expression
DICTIONARY = [
    '"specversion"', '"1.0"', '"0.3"', '"eventType"', '"eventTime"', '"detail-type"', '"detail"', '"time"',
    '"resources"', '"arn:aws:sagemaker:us-east-1:123456789012:training-job/x"', '"Type"', '"Notification"',
    '"Message"', '"sequencer"', '"LastModifiedTime"', '"datacontentencoding"', '"base64"', '"schemaurl"',
    '"runStatus"', '"TrainingJobStatus"', '"Failed"', '"Completed"', '"InProgress"', '"sequence"', '"platform"',
    '"ml.job.status_changed"', '"sagemaker"', '"azureml"', "1e308", "1e309", "-1", "18446744073709551616",
    "9223372036854775808", "null", "true", "[[[[[[[[", "]]]]]]]]", "{}", "[]", '"\\ud800"', '"\\u0000"',
    '"2024-01-01T00:00:00Z"', '"1583831889050"', "1583831889050", "0.000001",
    # CESQL (mode q)
    " AND ", " OR ", " XOR ", "NOT ", " LIKE ", " NOT LIKE ", " IN (", " NOT IN (", "EXISTS ", "TRUE", "FALSE",
    "'%'", "'_'", "'\\%'", "\\'", '\\"', "<>", "!=", "<=", ">=", "2147483647", "-2147483648", "CONCAT_WS(",
    "SUBSTRING(", "LEFT(", "RIGHT(", "ABS(", "INT(", "BOOL(", "STRING(", "IS_INT(", "IS_BOOL(", "LENGTH(", "TRIM(",
]


def seed_corpus(directory: Path) -> int:
    """Write the starting inputs: every corpus event as a plain body, wrapped in SNS, and (CloudEvents) in
    binary mode. Returns the number of files written."""
    from tests.fuzz.harness import CESQL_FILTERS
    from tests.normalize.corpus_util import CORPUS_FILES, corpus_lines

    directory.mkdir(parents=True, exist_ok=True)
    n = 0
    for i, expression in enumerate(CESQL_FILTERS):
        (directory / f"cesql-{i}").write_bytes(b"q" + expression.encode())
        n += 1
    for name in CORPUS_FILES:
        for i, line in enumerate(corpus_lines(name)):
            seeds = [b"p" + line, b"s" + line]
            obj = jsonutil.loads(line)
            if "specversion" in obj:
                attrs = {f"ce_{k}": v for k, v in obj.items() if k != "data"}
                seeds.append(b"h" + json.dumps(attrs).encode() + b"\n" + json.dumps(obj.get("data")).encode())
            for j, seed in enumerate(seeds):
                (directory / f"{name}-{i}-{j}").write_bytes(seed)
                n += 1
    return n


def write_dictionary(path: Path) -> None:
    path.write_text("".join(f"{json.dumps(token)}\n" for token in DICTIONARY))
