"""hpo dashboard over HTTP and in headless Chromium, on this machine only."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.review.conftest import ARTIFACTS, CHROMIUM_FLAGS, study_in


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())

def test_dashboard_serves_notes_and_artifacts_on_localhost_only(replicated: tuple) -> None:
    finished, result = replicated
    assert result.returncode == 0, result.stderr[-2000:]
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "hpo", "dashboard", "--port", str(port)],
                              cwd=finished, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                summaries = _get(f"http://127.0.0.1:{port}/api/studies")["study_summaries"]
                break
            except OSError:
                assert time.monotonic() < deadline, "dashboard never answered"
                time.sleep(0.5)
        study_id = next(s["study_id"] for s in summaries if s["study_name"] == "tiny")
        trials = []
        while time.monotonic() < deadline:  # the dashboard caches trials for a few seconds
            trials = _get(f"http://127.0.0.1:{port}/api/studies/{study_id}?after=0")["trials"]
            if trials:
                break
            time.sleep(1)
        done = [t for t in trials if t["state"] in ("Complete", "Pruned")]
        assert done and all(t["note"]["body"].startswith(f"## Trial {t['number']}")
                            for t in done)
        assert all(a["filename"].endswith(".png") for t in done for a in t["artifacts"])
        # Replicates say so on their page.
        reps = {t.number: t for t in study_in(finished).get_trials()
                if "replicate_of" in t.user_attrs}
        marked = [t for t in done if t["number"] in reps]
        assert marked and all(
            f"**Replicate** of trial {reps[t['number']].user_attrs['replicate_of']}, seed "
            f"{reps[t['number']].user_attrs['replicate_seed']}" in t["note"]["body"]
            for t in marked)
        assert any(t["artifacts"] for t in done)
        listening = subprocess.run(["ss", "-ltn"], capture_output=True, text=True).stdout
        assert f"127.0.0.1:{port}" in listening and f"0.0.0.0:{port}" not in listening
        chromium = shutil.which("chromium")
        if chromium is None and os.environ.get("CI"):
            pytest.fail("CI must have Debian's chromium (.ci/run installs it)")
        if chromium:
            shot = ARTIFACTS / "dashboard.png"
            # a trial's page: the first replicate, with its note
            page = (f"http://127.0.0.1:{port}/dashboard/studies/{study_id}/trials"
                    f"?numbers={marked[0]['number']}")
            flags = [*CHROMIUM_FLAGS, f"--user-data-dir={finished / 'chrome'}",
                     "--window-size=1280,900"]
            dom = subprocess.run([chromium, *flags, "--dump-dom", page], capture_output=True,
                                 text=True, timeout=120).stdout
            assert "tiny" in dom
            subprocess.run([chromium, *flags, f"--screenshot={shot}", page],
                           capture_output=True, timeout=120)
            assert shot.stat().st_size > 10_000
    finally:
        server.terminate()
        server.wait(timeout=30)
