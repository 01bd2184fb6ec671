"""`mribench weights [list|add]`: listing, hash refusal (exit 2, both hashes), adding an unpinned file."""
from __future__ import annotations

import torch
from typer.testing import CliRunner

from mribench.cli import app


def test_weights_cli(tmp_path, monkeypatch):
    monkeypatch.setenv("MRIBENCH_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    runner = CliRunner()
    listing = runner.invoke(app, ["weights"])
    assert listing.exit_code == 0 and listing.output.count("absent") == 2
    assert "pt_inception-2015-12-05-6726825d.pth" in listing.output
    bad = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    bad.write_bytes(b"junk")
    refused = runner.invoke(app, ["weights", "add", str(bad)])
    assert refused.exit_code == 2 and "6726825d" in refused.output and "does not match" in refused.output
    unpinned = tmp_path / "i3d_torchscript.pt"
    unpinned.write_bytes(b"stand-in")
    assert runner.invoke(app, ["weights", "add", str(unpinned)]).exit_code == 0
    assert (tmp_path / "weights" / "i3d_torchscript.pt").read_bytes() == b"stand-in"
    assert "present, hash not pinned" in runner.invoke(app, ["weights", "list"]).output
