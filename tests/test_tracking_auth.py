"""A shared tracking server with authentication on (`mlflow server --app-name
basic-auth`, bound to 127.0.0.1): the stages pass MLFLOW_TRACKING_USERNAME /
MLFLOW_TRACKING_PASSWORD to it; a wrong password is a one-line exit-2 error before
training, and the right one gets the run delivered."""

import configparser
import importlib.util
import sys
from pathlib import Path

import pytest
from servers import free_port, mlflow_server, start, stop, wait_http

from conftest import base_env, make_clone, run, wait_for_delivery

pytestmark = pytest.mark.slow

ADMIN_PASSWORD = "xornet-tests-Secret-1"  # the first start creates user admin with it


def auth_config(server_dir: Path) -> Path:
    """MLflow's own basic_auth.ini with the users in ``server_dir`` and its opt-in
    credential cache on: without it the server runs a password hash for every
    request, seconds of CPU per delivery."""
    spec = importlib.util.find_spec("mlflow")  # located, not imported
    shipped = Path(spec.origin).parent / "server" / "auth" / "basic_auth.ini"
    config = configparser.ConfigParser()
    config.read(shipped)
    config["mlflow"]["database_uri"] = f"sqlite:///{server_dir / 'basic_auth.db'}"
    config["mlflow"]["auth_cache_ttl_seconds"] = "600"
    path = server_dir / "basic_auth.ini"
    with open(path, "w") as handle:
        config.write(handle)
    return path


def test_basic_auth_server_refuses_a_wrong_password_before_training(tmp_path, monkeypatch):
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    server_dir = tmp_path / "server"
    server_dir.mkdir()
    config = auth_config(server_dir)
    command = mlflow_server(
        port,
        f"sqlite:///{server_dir / 'server.db'}",
        *("--app-name", "basic-auth"),
        *("--artifacts-destination", str(server_dir / "artifacts")),
    )
    env = base_env(
        MLFLOW_AUTH_ADMIN_PASSWORD=ADMIN_PASSWORD,
        MLFLOW_FLASK_SERVER_SECRET_KEY="xornet-tests-csrf-key",  # required by basic-auth
        MLFLOW_AUTH_CONFIG_PATH=str(config),
    )
    server = start(command, server_dir, env, server_dir / "server.log")
    try:
        wait_http(f"{uri}/health", server, timeout=300, any_status=True)
        repo = make_clone(tmp_path / "xornet")
        run([sys.executable, "stages/generate.py"], repo)
        for user, password in (("admin", "wrong"), ("nobody", ADMIN_PASSWORD), (None, None)):
            credentials = {
                "MLFLOW_TRACKING_URI": uri,
                "XORNET_TRACKING": "1",
                "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
            }
            if user:
                credentials |= {
                    "MLFLOW_TRACKING_USERNAME": user,
                    "MLFLOW_TRACKING_PASSWORD": password,
                }
            proc = run(
                [sys.executable, "stages/train.py"], repo, base_env(**credentials), check=False
            )
            assert proc.returncode == 2, proc.stderr
            (line,) = proc.stderr.splitlines()
            assert line.startswith("train: error: MLflow tracking server ")
            assert "refused the credentials (HTTP 401)" in line
            assert "MLFLOW_TRACKING_PASSWORD" in line and ADMIN_PASSWORD not in line
            assert proc.stdout == "" and not (repo / "models" / "model.npz").exists()
        good = base_env(
            MLFLOW_TRACKING_URI=uri,
            XORNET_TRACKING="1",
            MLFLOW_TRACKING_USERNAME="admin",
            MLFLOW_TRACKING_PASSWORD=ADMIN_PASSWORD,
            MLFLOW_HTTP_REQUEST_TIMEOUT="60",
        )
        run([sys.executable, "stages/train.py", "--set=train.epochs=100"], repo, good)
        wait_for_delivery(repo)  # the courier got the credentials from the stage
        from mlflow import MlflowClient

        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN_PASSWORD)
        c = MlflowClient(uri)
        (only,) = c.search_runs([c.get_experiment_by_name("xornet").experiment_id])
        assert only.info.status == "FINISHED"
        assert only.data.params["train.epochs"] == "100"
    finally:
        stop(server)
    assert Path(server_dir / "basic_auth.db").exists()  # the users live where the config says
