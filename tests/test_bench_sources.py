"""bench --src / --agent-src: which daemons run from which source tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import common
from bench.__main__ import use_sources
from bench.transfer_bench import TransferRun


@pytest.fixture(autouse=True)
def _clean_env():
    saved = dict(common.AGENT_ENV), dict(common.TRANSFER_ENV)
    common.AGENT_ENV.clear()
    common.TRANSFER_ENV.clear()
    yield
    for env, old in zip((common.AGENT_ENV, common.TRANSFER_ENV), saved, strict=True):
        env.clear()
        env.update(old)


def test_src_moves_both_daemons(tmp_path: Path) -> None:
    out = use_sources(tmp_path, None)
    assert dict(common.AGENT_ENV) == {"PYTHONPATH": str(tmp_path)}
    assert dict(common.TRANSFER_ENV) == {"PYTHONPATH": str(tmp_path)}
    assert out == {"agent_src": str(tmp_path), "transfer_src": str(tmp_path)}
    # a TransferRun made without an env of its own takes it; the agent's harness takes AGENT_ENV
    run = TransferRun(None, tmp_path, "/p", ["t"], "i")  # type: ignore[arg-type]
    assert run.env == {"PYTHONPATH": str(tmp_path)}
    assert common.AgentRun(tmp_path, "/p", "10.0.0.1").env == {"PYTHONPATH": str(tmp_path)}


def test_agent_src_overrides_the_agent_only(tmp_path: Path) -> None:
    other = tmp_path / "patched"
    out = use_sources(tmp_path, other)
    assert dict(common.AGENT_ENV) == {"PYTHONPATH": str(other)}
    assert dict(common.TRANSFER_ENV) == {"PYTHONPATH": str(tmp_path)}
    assert out == {"agent_src": str(other), "transfer_src": str(tmp_path)}


def test_no_source_leaves_the_installed_code(tmp_path: Path) -> None:
    assert use_sources(None, None) == {}
    assert dict(common.AGENT_ENV) == {} and common.TRANSFER_ENV == {}
    assert TransferRun(None, tmp_path, "/p", ["t"], "i").env == {}  # type: ignore[arg-type]
    # an explicit env is kept as given
    assert TransferRun(None, tmp_path, "/p", ["t"], "i", env={"X": "1"}).env == {"X": "1"}  # type: ignore[arg-type]
