"""The layering of the package (docs/design.md, "Layers and seams"): every import, also inside functions and under
TYPE_CHECKING, runs from a higher layer to a lower one or within one component; the pipeline's plug-in sees the
pipeline through its contract only, and the daemon names no sink."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "bridge"

# Lowest first. A component imports only components of lower layers (and its own modules): never one of a higher
# layer, nor a sibling of its own layer.
LAYERS: list[set[str]] = [
    {"bridge", "bridge.aio", "bridge.envsubst", "bridge.jsonutil", "bridge.logs", "bridge.retry", "bridge.metrics",
     "bridge.connectors", "bridge.azure_auth"},
    {"bridge.envelope", "bridge.limits", "bridge.storeguard", "bridge.kafka_oauth", "bridge.healthcheck"},
    {"bridge.model", "bridge.kafka_common"},
    {"bridge.normalize", "bridge.filters", "bridge.health"},
    {"bridge.sources", "bridge.sinks", "bridge.pipeline"},  # the connectors and the pipeline: none knows another
    {"bridge.state"},  # the pipeline's plug-in
    {"bridge.config"},
    {"bridge.app", "bridge.config_docs", "bridge.testing", "bridge.eos"},
    {"bridge.readiness", "bridge.tools"},
    {"bridge.daemon"},
    {"bridge.cli"},
]


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = modules()


def component(module: str) -> str:
    """The component a module belongs to: the longest name of the layer table it starts with."""
    found = [c for layer in LAYERS for c in layer if module == c or module.startswith(c + ".")]
    assert found, f"{module} is in no layer: add it to LAYERS (and to docs/design.md)"
    return max(found, key=len)


def layer(comp: str) -> int:
    return next(i for i, names in enumerate(LAYERS) if comp in names)


def imports(module: str) -> set[str]:
    """Every bridge module ``module`` imports, wherever the import statement is."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "bridge")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            if base.split(".")[0] != "bridge":
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.add(sub if sub in MODULES else base)
    return out


def test_every_import_runs_down_the_layers_or_within_a_component() -> None:
    """No module imports a component of a higher layer or a sibling of its own layer (a lower layer never knows a
    higher one: bridge.pipeline knows nothing of bridge.state, bridge.state nothing of the tools)."""
    upward: list[str] = []
    for module in sorted(MODULES):
        own = component(module)
        for target in sorted(imports(module)):
            other = component(target)
            if other != own and layer(other) >= layer(own):
                upward.append(f"{module} -> {target} ({own}: layer {layer(own)}, {other}: layer {layer(other)})")
    assert upward == []


def test_the_plug_in_sees_the_pipeline_through_its_contract_and_the_daemon_names_no_sink() -> None:
    """bridge.state imports of bridge.pipeline only the plug-in contract; the daemon reaches sinks through their
    registry alone and names no sink class."""
    state = {t for m in MODULES if component(m) == "bridge.state"
             for t in imports(m) if t.startswith("bridge.pipeline")}
    assert state == {"bridge.pipeline.plugin"}
    daemon = {t for t in imports("bridge.daemon") if t.startswith("bridge.sinks")}
    assert daemon == {"bridge.sinks.registry"}
    text = MODULES["bridge.daemon"].read_text()
    assert "KafkaSink" not in text and "JsonlSink" not in text


def test_the_check_sees_imports_inside_functions_and_type_checking_blocks() -> None:
    """The walk finds an import wherever it is: the pipeline's lazy import of the normalizer is seen (a check that
    saw only top-level imports would miss the upward imports this test exists for)."""
    assert "bridge.normalize" in imports("bridge.pipeline.admission")
    assert "bridge.sinks.kafka" in imports("bridge.state.topic")  # inside prepare_state_topic
