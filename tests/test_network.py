"""Servers hpo starts say, in one line, when more than this machine can reach them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hpo.network import exposure_warning, is_loopback
from tests.conftest import REPO


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_loopback_addresses_are_recognised() -> None:
    assert all(map(is_loopback, ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "10.1.2.3", "192.168.0.1"]))
    assert exposure_warning("127.0.0.1", 80, "x", "y") is None


def _serve(command: list[str], cwd: Path, port: int) -> tuple[int, list[str]]:
    """Starts the server, waits until it listens, interrupts it; (exit status, stderr lines)."""
    server = subprocess.Popen([sys.executable, "-m", "hpo", *command, "--port", str(port)],
                              cwd=cwd, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            time.sleep(0.2)
    time.sleep(0.5)
    server.send_signal(signal.SIGINT)
    _, err = server.communicate(timeout=30)
    return server.returncode, err.splitlines()


@pytest.mark.parametrize("command,access", [
    (["dashboard"], "read every study"),
    (["proxy"], "read and write every study"),
])
def test_a_server_on_every_interface_warns_once_and_exits_as_before(tmp_path, command, access
                                                                    ) -> None:
    journal = tmp_path / "hpo.journal"
    journal.write_text("")
    local_status, local = _serve([*command, "--storage", str(journal)], tmp_path, _free_port())
    wide_status, wide = _serve([*command, "--storage", str(journal), "--host", "0.0.0.0"],
                               tmp_path, _free_port())
    assert not [line for line in local if "warning" in line], local
    (warning,) = [line for line in wide if "warning" in line]
    assert "no authentication" in warning and access in warning and "SSH tunnel" in warning
    assert "Traceback" not in "\n".join(wide)
    assert wide_status == local_status
