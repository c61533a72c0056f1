"""The emulator's state files (connections JSON with secrets, the demo private key) cannot be
redirected by another local user: no planted symlink is followed, no shared directory is used."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from sf_oauth_provider.emulator import RunningEmulator
from sf_oauth_provider.emulator.connections import write_connections_file
from sf_oauth_provider.emulator.files import UnsafeStateDir

NOBODY = 65534


def _victim(tmp_path: Path) -> Path:
    victim = tmp_path / "victim" / ".bashrc"
    victim.parent.mkdir()
    victim.write_text("# my shell settings\n")
    return victim


@pytest.mark.parametrize("name", ["connections.json.tmp", "demo_private_key.pem.tmp", "connections.json", "demo_private_key.pem"])
def test_planted_symlink_is_not_followed(emulator: RunningEmulator, tmp_path: Path, name: str) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    victim = _victim(tmp_path)
    (state / name).symlink_to(victim)
    write_connections_file(emulator, state / "connections.json", state / "demo_private_key.pem")
    assert victim.read_text() == "# my shell settings\n"
    for f in ("connections.json", "demo_private_key.pem"):
        st = os.lstat(state / f)
        assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    assert "PRIVATE KEY" in (state / "demo_private_key.pem").read_text()


@pytest.mark.parametrize("mode", [0o777, 0o1777, 0o770])
def test_state_dir_writable_by_others_is_refused(emulator: RunningEmulator, tmp_path: Path, mode: int) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(mode)
    with pytest.raises(UnsafeStateDir, match="writable by other users"):
        write_connections_file(emulator, shared / "connections.json", shared / "demo_private_key.pem")
    assert list(shared.iterdir()) == []


def test_state_dir_of_another_user_is_refused(emulator: RunningEmulator) -> None:
    # in /tmp, so that the other user can reach it (pytest's tmp_path is 0700)
    theirs = Path(tempfile.mkdtemp(prefix="sf-emu-theirs-", dir="/tmp"))
    try:
        theirs.chmod(0o755)
        os.chown(theirs, NOBODY, NOBODY)
        # the other user (a real uid, via setpriv) plants a symlink in their own directory
        subprocess.run(
            ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
             "ln", "-s", "/etc/hostname", str(theirs / "connections.json.tmp")],
            check=True,
        )
        with pytest.raises(UnsafeStateDir, match="belongs to uid"):
            write_connections_file(emulator, theirs / "connections.json", theirs / "demo_private_key.pem")
        assert not (theirs / "connections.json").exists()
    finally:
        shutil.rmtree(theirs)


def test_cli_refuses_a_shared_state_dir(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    proc = subprocess.run(
        [sys.executable, "-m", "sf_oauth_provider.emulator", "--state-dir", str(shared)],
        capture_output=True, text=True, timeout=30,
    )
    assert proc.returncode == 2
    assert "writable by other users" in proc.stderr and str(shared) in proc.stderr
    assert "READY" not in proc.stdout
