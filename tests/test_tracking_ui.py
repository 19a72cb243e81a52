"""What `mlflow ui` shows, in a real browser (headless Chromium, skipped without one).

MLflow 3.17's UI opens an experiment on its GenAI "Overview" page unless the page's
workflow type is "machine_learning" (a URL parameter, or the switch at the top,
which the browser remembers); the experiment's `mlflow.experimentKind` tag, which
the courier sets, is not enough on its own. The README therefore links the runs
table with `?workflowType=machine_learning`; this checks that the link shows the
training run by its name with its dataset inputs, and records the default page.
"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from servers import free_port, mlflow_server, start, stop, wait_http

from conftest import base_env, make_clone, run, unmeasured_couriers, wait_for_delivery

pytestmark = pytest.mark.slow

BROWSER = next(
    (b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None
)


def page_text(url: str, profile: Path) -> str:
    """The text of the page at ``url`` once its scripts have run."""
    proc = subprocess.run(
        [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={profile}", "--virtual-time-budget=20000",
         "--dump-dom", url],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = re.sub(r"<script.*?</script>|<style.*?</style>", " ", proc.stdout, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", text))


@pytest.mark.skipif(BROWSER is None, reason="no headless Chromium")
def test_the_readme_link_opens_the_runs_table_with_the_named_run(tmp_path):
    repo = make_clone(tmp_path / "xornet")
    env = unmeasured_couriers(base_env(XORNET_TRACKING="1"))
    run([sys.executable, "stages/generate.py"], repo, env)
    run([sys.executable, "stages/train.py", "--set", "train.epochs=50"], repo, env)
    wait_for_delivery(repo)
    port = free_port()
    server = start(
        mlflow_server(port, f"sqlite:///{repo / 'mlflow.db'}"),
        repo,
        base_env(),
        tmp_path / "server.log",
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/health", server, timeout=300)
        experiment = f"http://127.0.0.1:{port}/#/experiments/1"
        runs = page_text(f"{experiment}?workflowType=machine_learning", tmp_path / "a")
        default = page_text(experiment, tmp_path / "b")
    finally:
        stop(server)
    assert "Runs - Experiment 1" in runs
    assert "lr=0.5 hidden=[8] seed=0 epochs=50" in runs  # named for what differs
    assert "training" in runs and "test" in runs  # the dataset inputs' contexts
    # MLflow 3.17.2's default page, despite mlflow.experimentKind (see the README):
    assert "Overview - Experiment 1" in default
