"""Offline checks of the Dockerfile and .dockerignore (no Docker engine needed)."""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE_CONFIG = ROOT / "config" / "compose.yaml"

BUILD_TOOLS = ("gcc", "g++", "build-essential", "make", "clang", "cargo", "rustc", "git", "curl", "wget")


@dataclass
class Instruction:
    """One Dockerfile instruction with its continuation lines joined."""

    keyword: str
    args: str


@dataclass
class Stage:
    """A build stage: its FROM line and the instructions that follow it."""

    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        """Return every instruction of this stage with the given keyword."""
        return [i for i in self.instructions if i.keyword == keyword]


def parse_dockerfile(text: str) -> list[Stage]:
    """Split a Dockerfile into stages of instructions (comments dropped, continuations joined)."""
    logical: list[str] = []
    buf = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        logical.append(buf)
        buf = ""
    if buf:
        logical.append(buf)
    stages: list[Stage] = []
    for entry in logical:
        keyword, _, args = entry.partition(" ")
        keyword = keyword.upper()
        args = args.strip()
        if keyword == "FROM":
            m = re.match(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", args, re.IGNORECASE)
            assert m, f"unparsable FROM: {args}"
            stages.append(Stage(base=m.group(1), name=m.group(2)))
        elif stages:
            stages[-1].instructions.append(Instruction(keyword, args))
    return stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    """The parsed stages of the repository's Dockerfile."""
    return parse_dockerfile(DOCKERFILE.read_text())


def _exec_form(args: str) -> list[str]:
    """Parse a JSON (exec form) instruction argument list."""
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def _config_http_port() -> int:
    """The http.port of config/compose.yaml (default 8080 when absent)."""
    cfg = yaml.safe_load(COMPOSE_CONFIG.read_text())
    return int(cfg.get("http", {}).get("port", 8080))


def test_dockerfile_is_multi_stage_with_slim_runtime(stages: list[Stage]) -> None:
    """The image is built in at least two stages and the final one is python:3.11-slim."""
    assert len(stages) >= 2
    assert stages[-1].base == "python:3.11-slim"
    builder_names = {s.name for s in stages[:-1] if s.name}
    copies_from = [i.args for i in stages[-1].all("COPY") if i.args.startswith("--from=")]
    assert any(c.split()[0].removeprefix("--from=") in builder_names for c in copies_from), (
        "final stage must copy its venv from a named builder stage"
    )


def test_builder_builds_a_wheel_into_a_venv(stages: list[Stage]) -> None:
    """The builder builds the project's wheel with a separate build venv and installs it into a pip-less
    /opt/venv, which the final stage copies."""
    builder_runs = " ".join(i.args for s in stages[:-1] for i in s.all("RUN"))
    assert "-m venv --without-pip /opt/venv" in builder_runs
    assert "/opt/build/bin/pip wheel --no-build-isolation --no-deps" in builder_runs
    assert "--python /opt/venv/bin/python install --no-deps /wheels/" in builder_runs
    assert "--python /opt/venv/bin/python check" in builder_runs
    final_copies = [i.args for i in stages[-1].all("COPY")]
    assert any("/opt/venv /opt/venv" in c for c in final_copies)
    assert not any("/opt/build" in c for c in final_copies)
    env = " ".join(i.args for i in stages[-1].all("ENV"))
    assert "PATH=/opt/venv/bin:" in env


def test_builder_installs_only_from_the_hash_checked_locks(stages: list[Stage]) -> None:
    """Every pip install of the builder takes pinned, hashed wheels from the two lock files, or the project's own
    wheel without dependencies: nothing is resolved or upgraded at build time."""
    builder = [i for s in stages[:-1] for i in s.all("RUN")]
    installs = [part.strip() for i in builder for part in i.args.split("&&") if re.search(r"\bpip\b.* install ", part)]
    assert len(installs) == 3, installs
    locks = set()
    for cmd in installs:
        assert "--upgrade" not in cmd and " -U " not in cmd, cmd
        if "/wheels/" in cmd:
            assert "--no-deps" in cmd, cmd
            continue
        assert "--require-hashes" in cmd and "--only-binary :all:" in cmd, cmd
        m = re.search(r"-r (\S+)", cmd)
        assert m, cmd
        locks.add(m.group(1))
    assert locks == {"requirements.lock", "requirements-build.lock"}
    copied = " ".join(i.args for s in stages[:-1] for i in s.all("COPY"))
    assert "requirements-build.lock" in copied and "requirements.lock" in copied


def test_final_stage_runs_as_fixed_non_root_uid(stages: list[Stage]) -> None:
    """The final stage creates UID 10001 and switches to it numerically before the entrypoint."""
    final = stages[-1]
    users = final.all("USER")
    assert users, "final stage has no USER"
    user = users[-1].args.split(":")[0]
    assert user == "10001"
    runs = " ".join(i.args for i in final.all("RUN"))
    assert "--uid 10001" in runs
    idx_user = final.instructions.index(users[-1])
    idx_entry = final.instructions.index(final.all("ENTRYPOINT")[-1])
    assert idx_user < idx_entry


def test_config_dir_stays_owned_by_root(stages: list[Stage]) -> None:
    """/etc/bridge is created root-owned and read-only to others: the daemon's user cannot rewrite its config."""
    runs = " ".join(i.args for i in stages[-1].all("RUN"))
    assert "install -d -o root -g root -m 0755 /etc/bridge" in runs
    assert not re.search(r"\bchown\b[^&]*/etc/bridge", runs)
    assert not re.search(r"\bchmod\b[^&]*/etc/bridge", runs)


def test_final_stage_installs_no_build_tools(stages: list[Stage]) -> None:
    """The runtime stage installs nothing with apt or pip, so no compiler or fetch tool lands in it."""
    final_runs = " ".join(i.args for i in stages[-1].all("RUN"))
    assert "apt-get install" not in final_runs and "apk add" not in final_runs
    assert "pip install" not in final_runs
    for tool in BUILD_TOOLS:
        assert not re.search(rf"\b{re.escape(tool)}\b", final_runs), tool


def test_healthcheck_runs_the_proxy_free_probe_on_the_configured_port(stages: list[Stage]) -> None:
    """HEALTHCHECK runs bridge.healthcheck (http.client, no proxy, port from the mounted config), not urllib or curl;
    the probe's defaults are the config path the CMD runs and the exposed port."""
    from bridge import healthcheck

    final = stages[-1]
    checks = final.all("HEALTHCHECK")
    assert len(checks) == 1
    options, _, cmd = checks[0].args.partition("CMD ")
    assert _exec_form(cmd) == ["python", "-m", "bridge.healthcheck"]
    assert "--interval=15s" in options and "--timeout=5s" in options
    for banned in ("urllib", "curl", "wget", "8080"):
        assert banned not in checks[0].args
    assert str(healthcheck.DEFAULT_CONFIG) == _exec_form(final.all("CMD")[-1].args)[-1]
    exposed = {int(i.args.split("/")[0]) for i in final.all("EXPOSE")}
    assert exposed == {healthcheck.DEFAULT_PORT}


def test_exposed_port_matches_config_http_port(stages: list[Stage]) -> None:
    """EXPOSE publishes exactly the http.port the compose config serves on."""
    exposed = [int(p.split("/")[0]) for i in stages[-1].all("EXPOSE") for p in i.args.split()]
    assert exposed == [_config_http_port()]


def test_entrypoint_and_cmd_run_the_daemon_on_the_mounted_config(stages: list[Stage]) -> None:
    """ENTRYPOINT is the bridge CLI and CMD runs the daemon with /etc/bridge/config.yaml."""
    final = stages[-1]
    assert _exec_form(final.all("ENTRYPOINT")[-1].args) == ["bridge"]
    assert _exec_form(final.all("CMD")[-1].args) == ["run", "--config", "/etc/bridge/config.yaml"]


def test_bridge_console_script_is_declared() -> None:
    """pyproject.toml declares the `bridge` console script the ENTRYPOINT relies on."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["scripts"]["bridge"] == "bridge.cli:main"
    assert meta["project"]["requires-python"].startswith(">=3.11")


def _dockerignore_patterns() -> list[str]:
    """The non-comment lines of .dockerignore."""
    lines = [ln.strip() for ln in DOCKERIGNORE.read_text().splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("#")]


def _ignored(rel: str, patterns: list[str]) -> bool:
    """Whether a context path is excluded by .dockerignore (last matching pattern wins, `!` re-includes)."""
    parts = rel.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for pat in patterns:
        negate = pat.startswith("!")
        pat = pat.lstrip("!").strip("/")
        for cand in candidates:
            names = [cand, cand.split("/")[-1]] if pat.startswith("**/") else [cand]
            pat_eff = pat.removeprefix("**/")
            if any(fnmatch.fnmatchcase(n, pat_eff) for n in names):
                result = not negate
                break
    return result


def test_copied_sources_exist_and_are_not_dockerignored(stages: list[Stage]) -> None:
    """Every file the Dockerfile COPYs from the context exists in the repo and survives .dockerignore."""
    patterns = _dockerignore_patterns()
    sources: list[str] = []
    for stage in stages:
        for ins in stage.all("COPY"):
            if ins.args.startswith("--from="):
                continue
            tokens = [t for t in ins.args.split() if not t.startswith("--")]
            sources.extend(tokens[:-1])
    assert {"pyproject.toml", "bridge", "requirements.lock", "requirements-build.lock"} <= set(sources)
    for src in sources:
        assert (ROOT / src).exists(), f"COPY source missing from the repository: {src}"
        assert not _ignored(src, patterns), f"COPY source excluded by .dockerignore: {src}"


def test_dockerignore_excludes_local_clutter() -> None:
    """.dockerignore keeps venvs, VCS data, tool dirs, caches and node_modules out of the build context."""
    patterns = _dockerignore_patterns()
    for path in (
        ".venv",
        ".git",
        ".tools",
        "node_modules",
        ".pytest_cache",
        ".mypy_cache",
        ".ruff_cache",
        "bridge/__pycache__",
        "tests",
    ):
        assert _ignored(path, patterns), path
    assert not _ignored("bridge/cli.py", patterns)


def test_runtime_stage_carries_the_title_label(stages: list[Stage]) -> None:
    """The final stage is labelled org.opencontainers.image.title=ml-event-bridge (tests prune old builds by it)."""
    from testbed.docker import IMAGE_TITLE

    labels = " ".join(i.args for i in stages[-1].all("LABEL"))
    assert f'org.opencontainers.image.title="{IMAGE_TITLE}"' in labels
