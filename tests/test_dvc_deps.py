"""Stage dependencies that cannot go stale.

Each stage in dvc.yaml depends on whole layer folders of src/xornet plus single
files. Here every stage's own command runs (in a clone, tracking off, in pipeline
order) and reports every xornet file its process used; each must be covered by one
of that stage's deps. The tracking folder is exempt: it never changes an output
(tests/test_tracking_dvc.py::test_repro_on_a_fresh_clone_records_exactly_one_complete_run
reproduces a commit with tracking on and with it off and gets the same dvc.lock,
i.e. the same md5 for every output of every stage).
"""

import json
import posixpath
from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml

from conftest import LIGHT_PLOTS, base_env, make_clone, run, set_params

PACKAGE = "src/xornet"
TRACKING = "src/xornet/tracking"  # not a dep of any stage, on purpose (module docstring)

# Put on PYTHONPATH, so every Python process of a stage command imports it at start.
# At exit (its handler registered first, so it runs last) it appends one JSON line:
# the files of the xornet modules the process imported, and the files it opened
# (non-Python files of the package, should it ever read any).
SITECUSTOMIZE = """\
import atexit, json, os, sys

_opened = set()


def _audit(event, args):
    if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        try:
            _opened.add(os.path.abspath(os.fsdecode(args[0])))
        except Exception:
            pass


sys.addaudithook(_audit)


@atexit.register
def _dump():
    modules = {
        name: getattr(module, "__file__", None)
        for name, module in list(sys.modules.items())
        if name == "xornet" or name.startswith("xornet.")
    }
    with open(os.environ["XORNET_USED_FILES"], "a") as out:
        out.write(json.dumps({"modules": modules, "opened": sorted(_opened)}) + "\\n")


try:  # the tests' lazy coverage start, next on PYTHONPATH when coverage runs
    import lazy_coverage  # noqa: F401
except ImportError:
    pass
"""


def uncovered(
    used: Mapping[str, set[str]],
    deps: Mapping[str, list[str]],
    exempt: tuple[str, ...] = (TRACKING,),
) -> dict[str, list[str]]:
    """Per stage, the files it used that none of its deps covers: a dep covers the
    file it names and everything under the folder it names. Files under an
    ``exempt`` folder aside. Paths relative to the project root; ``{}``: none missing."""

    def covers(dep: str, path: str) -> bool:
        dep = posixpath.normpath(dep)
        return path == dep or path.startswith(dep + "/")

    missing = {}
    for stage, files in used.items():
        left = [f for f in files if not any(covers(d, f) for d in (*deps.get(stage, []), *exempt))]
        if left:
            missing[stage] = sorted(left)
    return missing


def path_of(entry: str | dict) -> str:
    """A deps/outs entry of dvc.yaml: a path, or ``{path: {options}}``."""
    return entry if isinstance(entry, str) else next(iter(entry))


def stage_deps(dvc_yaml: dict) -> dict[str, list[str]]:
    return {
        name: [path_of(d) for d in stage.get("deps", [])]
        for name, stage in dvc_yaml["stages"].items()
    }


def pipeline_order(dvc_yaml: dict) -> list[str]:
    """The stages, each after the stages whose outputs it depends on."""
    stages = dvc_yaml["stages"]
    producer = {
        path_of(out): name
        for name, stage in stages.items()
        for key in ("outs", "metrics", "plots")
        for out in stage.get(key, [])
    }
    order: list[str] = []

    def visit(name: str) -> None:
        if name not in order:
            for dep in stage_deps(dvc_yaml)[name]:
                if dep in producer:
                    visit(producer[dep])
            order.append(name)

    for name in stages:
        visit(name)
    return order


def package_files(repo: Path, records: list[dict]) -> set[str]:
    """The files under the repo's package that the processes of ``records`` used."""
    package = (repo / PACKAGE).resolve()
    used = set()
    for record in records:
        for name, file in record["modules"].items():
            # From anywhere else (the editable install), the check would be about the
            # wrong tree: the stage scripts put their own checkout's src first.
            assert file and Path(file).resolve().is_relative_to(package), (name, file)
            used.add(Path(file).resolve())
        used |= {
            path
            for path in map(Path, record["opened"])
            if path.is_relative_to(package) and "__pycache__" not in path.parts
        }
    return {str(path.relative_to(repo.resolve())) for path in used}


@pytest.fixture(scope="module")
def dvc_yaml() -> dict:
    return yaml.safe_load((Path(__file__).resolve().parents[1] / "dvc.yaml").read_text())


@pytest.fixture(scope="module")
def used(tmp_path_factory, dvc_yaml) -> dict[str, set[str]]:
    """Per stage, the xornet files its command (from dvc.yaml, run as DVC runs it:
    through the shell, in the project root) used; tracking off, pipeline order."""
    tmp = tmp_path_factory.mktemp("deps")
    repo = make_clone(tmp / "xornet")
    site = tmp / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    result = {}
    for name in pipeline_order(dvc_yaml):
        stage = dvc_yaml["stages"][name]
        assert "wdir" not in stage and "foreach" not in stage and "matrix" not in stage, name
        report = tmp / f"{name}.jsonl"
        env = base_env(PYTHONPATH=str(site), XORNET_USED_FILES=str(report))
        run(["sh", "-c", stage["cmd"]], repo, env)
        assert report.exists(), f"{name}: its command ran no Python process: {stage['cmd']}"
        records = [json.loads(line) for line in report.read_text().splitlines()]
        result[name] = package_files(repo, records)
    return result


def test_every_xornet_file_a_stage_uses_is_one_of_its_deps(used, dvc_yaml):
    assert set(used) == set(dvc_yaml["stages"])
    for name, files in used.items():  # the recording works: the obvious files are there
        assert {f"{PACKAGE}/cli.py", f"{PACKAGE}/stages/{name}.py"} <= files, (name, files)
    assert uncovered(used, stage_deps(dvc_yaml)) == {}


def test_the_check_catches_hand_picked_deps(used, dvc_yaml):
    deps = stage_deps(dvc_yaml)
    # A layer folder left out: train reads and writes through src/xornet/files.
    doctored = {**deps, "train": [d for d in deps["train"] if d != f"{PACKAGE}/files"]}
    files_layer = sorted(f for f in used["train"] if f.startswith(f"{PACKAGE}/files/"))
    assert files_layer
    assert uncovered(used, doctored) == {"train": files_layer}
    # The old style: the core modules the stage module imports itself, by hand. The
    # ones those import in turn (activations, initializers, ...) go missing.
    direct = ["data", "losses", "metrics", "model"]
    hand_picked = [d for d in deps["evaluate"] if d != f"{PACKAGE}/core"]
    hand_picked += [f"{PACKAGE}/core/{m}.py" for m in direct]
    indirect = sorted(
        f for f in used["evaluate"] if f.startswith(f"{PACKAGE}/core/") and f not in hand_picked
    )
    assert f"{PACKAGE}/core/activations.py" in indirect
    assert uncovered(used, {**deps, "evaluate": hand_picked}) == {"evaluate": indirect}
    # Tracking is exempt, wherever it shows up.
    assert uncovered({"train": {f"{TRACKING}/outbox.py"}}, deps) == {}
    assert uncovered({"train": {f"{TRACKING}/outbox.py"}}, deps, exempt=()) == {
        "train": [f"{TRACKING}/outbox.py"]
    }


def changed_stages(repo: Path) -> dict[str, list]:
    return json.loads(run(["dvc", "status", "--json"], repo).stdout)


def stale_in_a_fresh_clone(repo: Path) -> dict[str, list]:
    """What `dvc status` finds changed in a clone beyond its missing outputs (neither git
    nor a cache holds them): code or params that differ from dvc.lock's, per stage."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    outputs = {out["path"] for stage in lock["stages"].values() for out in stage["outs"]}
    stale = {}
    for name, changes in changed_stages(repo).items():
        for change in changes:
            if not isinstance(change, dict):  # e.g. "always changed"
                stale.setdefault(name, []).append(change)
                continue
            for kind, entries in change.items():
                left = {
                    path: state
                    for path, state in entries.items()
                    if not (kind in ("changed outs", "changed deps") and path in outputs)
                    or state not in ("deleted", "not in cache")
                }
                if left:
                    stale.setdefault(name, []).append({kind: left})
    return stale


def test_the_committed_dvc_lock_records_the_code_and_params_as_they_are(clone):
    """A teammate's fresh clone must find dvc.lock current: a change to the code a stage
    depends on (or to params.yaml) is committed with the dvc.lock that `dvc repro` wrote
    for it, or every stage reruns and rewrites the lock on their machine."""
    assert stale_in_a_fresh_clone(clone) == {}
    core = clone / PACKAGE / "core" / "metrics.py"
    core.write_text(core.read_text() + "\n# an edit nobody reproduced\n")
    stale = stale_in_a_fresh_clone(clone)
    assert set(stale) == set(yaml.safe_load((clone / "dvc.yaml").read_text())["stages"])
    for changes in stale.values():
        assert changes == [{"changed deps": {f"{PACKAGE}/core": "modified"}}], changes


@pytest.mark.slow
def test_editing_a_loss_makes_train_and_evaluate_stale_but_tracking_code_does_not(tmp_path):
    repo = make_clone(tmp_path / "xornet")
    set_params(repo, train={"epochs": 200}, plot=LIGHT_PLOTS)
    run(["dvc", "repro"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "reproduced"], repo)
    assert changed_stages(repo) == {}

    outbox = repo / TRACKING / "outbox.py"
    outbox.write_text(outbox.read_text() + "\n# an edit to the tracking code\n")
    assert changed_stages(repo) == {}

    losses = repo / PACKAGE / "core/losses.py"
    text = losses.read_text()
    bce = "return _encode_targets(1.0, y, scale, dtype)"
    assert text.count(bce) == 1
    # Twice the BCE gradient: a different training, so different outputs.
    losses.write_text(text.replace(bce, bce.replace("(1.0,", "(2.0,")))
    status = changed_stages(repo)
    assert {"train", "evaluate"} <= set(status), status
    for name in ("train", "evaluate"):
        assert {"changed deps": {f"{PACKAGE}/core": "modified"}} in status[name], status[name]
