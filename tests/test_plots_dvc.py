"""`dvc plots show` / `dvc plots diff` on the real pipeline's outputs, in a temporary
clone with small params (tracking off)."""

import csv
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import make_clone, run, set_params

pytestmark = pytest.mark.slow

OFFLINE_TEMPLATE = "templates/dvc_plots_offline.html"


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    repo = make_clone(tmp_path_factory.mktemp("plots") / "xornet")
    set_params(
        repo,
        data={"n_samples": 200},
        train={"epochs": 200, "snapshot_every": 20},
        plot={"dpi": 50, "animation_frames": 5},
    )
    run(["git", "commit", "-qam", "small run"], repo)
    run(["dvc", "repro"], repo)
    return repo


def show(repo: Path, out: str, *args: str) -> str:
    run(["dvc", "plots", "show", "-o", out, *args], repo)
    return (repo / out / "index.html").read_text(encoding="utf-8")


def specs(html: str) -> dict[str, dict]:
    """The vega-lite specs embedded in DVC's page, by title."""
    found = [json.loads(text) for text in re.findall(r"var spec = (\{.*?\});\n", html)]
    return {spec["title"]["text"]: spec for spec in found}


def csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_plots_show_has_learning_curves_confusion_data_and_images(repo):
    html = show(repo, "shown")
    shown = specs(html)
    assert set(shown) == {"Loss", "Validation accuracy", "Confusion matrix (test set)"}

    history = csv_rows(repo / "metrics/history.csv")
    assert len(history) == 200
    loss = shown["Loss"]["data"]["values"]
    # One point per epoch and loss column, with the history's own numbers.
    assert len(loss) == 2 * len(history)
    points = {(v["field"], v["epoch"], v["dvc_inferred_y_value"]) for v in loss}
    for row in history:
        assert ("train_loss", row["epoch"], row["train_loss"]) in points
        assert ("val_loss", row["epoch"], row["val_loss"]) in points
    # The loss spans orders of magnitude: a log y axis (.dvc/plots/linear_log.json, DVC's
    # linear template with a log scale); accuracy keeps a linear one.
    assert '"scale": {"type": "log"}' in json.dumps(shown["Loss"])
    assert '"log"' not in json.dumps(shown["Validation accuracy"])
    accuracy = shown["Validation accuracy"]["data"]["values"]
    assert [(v["epoch"], v["val_accuracy"]) for v in accuracy] == [
        (row["epoch"], row["val_accuracy"]) for row in history
    ]

    predictions = csv_rows(repo / "metrics/predictions.csv")
    confusion = shown["Confusion matrix (test set)"]
    assert [(v["actual"], v["predicted"]) for v in confusion["data"]["values"]] == [
        (row["actual"], row["predicted"]) for row in predictions
    ]
    assert "rect" in json.dumps(confusion)  # DVC's confusion template draws cells

    for image in ("learning_curves.png", "decision_boundary.png", "confusion_matrix.png"):
        assert image in html
        assert list((repo / "shown").rglob(f"*{image}")), image
    assert list((repo / "shown").rglob("*training.gif"))


def test_plots_diff_compares_two_experiments(repo):
    run(["dvc", "exp", "run", "-n", "lr-low", "-S", "train.learning_rate=0.1"], repo)
    run(["dvc", "exp", "run", "-n", "lr-high", "-S", "train.learning_rate=1.0"], repo)
    run(["dvc", "plots", "diff", "lr-low", "lr-high", "-o", "diffed"], repo)
    html = (repo / "diffed" / "index.html").read_text(encoding="utf-8")
    assert "lr-low" in html and "lr-high" in html
    assert '"train_loss"' in html
    # Each image plot appears once per experiment.
    assert len(re.findall(r"decision_boundary\.png", html)) >= 2


def test_offline_template_needs_no_network(repo):
    html = show(repo, "offline", "--html-template", OFFLINE_TEMPLATE)
    assert "cdn.jsdelivr" not in html and "<script src=" not in html
    assert "vegaEmbed" in html and '"train_loss"' in html


BROWSER = next(
    (b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None
)


@pytest.mark.skipif(BROWSER is None, reason="no headless Chromium to render the page")
def test_offline_page_renders_charts_in_a_browser(repo):
    """With the template, vega draws its three charts (canvas elements) from a local file;
    DVC's default page, whose scripts come from a CDN, draws none without network."""
    show(repo, "offline_page", "--html-template", OFFLINE_TEMPLATE)
    page = (repo / "offline_page" / "index.html").as_uri()
    proc = subprocess.run(
        [
            BROWSER,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=8000",
            "--dump-dom",
            page,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count('class="marks"') == 3


@pytest.mark.skipif(BROWSER is None, reason="no headless Chromium to open the GIF")
def test_the_training_gif_opens_in_a_browser(repo):
    """Chromium decodes the plot stage's GIF: the page writes the image's natural size,
    which stays 0 x 0 for an image the browser cannot decode."""
    page = repo / "gif_page.html"
    gif = (repo / "plots" / "training.gif").as_uri()
    page.write_text(
        f'<img id="g" src="{gif}" onload="document.title=this.naturalWidth+\'x\'+'
        f'this.naturalHeight" onerror="document.title=\'error\'"><p>x</p>',
        encoding="utf-8",
    )
    proc = subprocess.run(
        [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files",
         "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    from PIL import Image

    with Image.open(repo / "plots" / "training.gif") as image:
        expected = f"{image.width}x{image.height}"
    assert f"<title>{expected}</title>" in proc.stdout, proc.stdout[:500]
