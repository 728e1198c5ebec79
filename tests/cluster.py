"""A real Slurm cluster and a real SSH server on this machine, for the scale-out test: Debian's slurm-wlm (one
slurmctld and one slurmd on localhost, authenticated by munge) and openssh-server, each configured in a folder
of the test's own, on free ports, and stopped when the test ends. `make test` installs the packages where it can
(cluster/install-test-tools); where they are missing or a daemon does not start, the test fails and says why."""

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.repos import environment

INSTALL = "run cluster/install-test-tools (as root: apt-get install slurm-wlm munge openssh-server)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require(*programs: str) -> dict:
    """The full paths of `programs`; fails the test naming the missing ones."""
    found = {p: shutil.which(p) or next((f"{d}/{p}" for d in ("/usr/sbin", "/sbin") if os.access(f"{d}/{p}", os.X_OK)),
                                         None) for p in programs}
    missing = [p for p, path in found.items() if path is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} not found: {INSTALL}")
    return found


def environment_for(slurm_env: dict, *parts: dict, **extra) -> dict:
    """The environment of commands that submit to the cluster: the tests' own, Slurm's, and `parts`; sbatch hands
    it to the job (its default --export=ALL)."""
    env = environment(SLURM_CONF=slurm_env["SLURM_CONF"], **extra)
    for part in parts:
        env.update(part)
    return env


def wait_until(ready, what: str, log: Path, limit_s: float = 30) -> None:
    start = time.monotonic()
    while not ready():
        if time.monotonic() - start > limit_s:
            pytest.fail(f"{what} did not start in {limit_s:.0f} s; its log, {log}:\n"
                        f"{log.read_text()[-3000:] if log.exists() else '(none)'}")
        time.sleep(0.3)


def stop(pid_file: Path) -> None:
    try:
        os.kill(int(pid_file.read_text().split()[0]), signal.SIGTERM)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        pass


SLURM_CONF = """\
ClusterName=bench
SlurmctldHost={host}(127.0.0.1)
SlurmUser={user}
SlurmdUser={user}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge.socket,cred_expire=10
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MinJobAge=3600
MpiDefault=none
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


@contextmanager
def slurm_cluster(root: Path):
    """Starts munged, slurmctld and slurmd with their state in `root`; yields the environment that points
    Slurm's commands at them (SLURM_CONF); stops them afterwards."""
    tools = require("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol")
    root.mkdir(parents=True)
    (root / "state").mkdir()
    (root / "spool").mkdir()
    key = root / "munge.key"
    key.write_bytes(os.urandom(128))
    key.chmod(0o600)
    memory_mb = int(Path("/proc/meminfo").read_text().split()[1]) // 1024 - 1024
    conf = root / "slurm.conf"
    conf.write_text(SLURM_CONF.format(host=socket.gethostname().split(".")[0], user=getpass.getuser(), root=root,
                                      ctld_port=free_port(), d_port=free_port(), cpus=os.cpu_count(),
                                      memory_mb=memory_mb))
    env = dict(os.environ, SLURM_CONF=str(conf))
    # --force: munged refuses a socket folder that others can traverse (the test's tmp folder) without it.
    subprocess.run([tools["munged"], "--force", f"--socket={root}/munge.socket", f"--key-file={key}",
                    f"--log-file={root}/munged.log", f"--pid-file={root}/munged.pid",
                    f"--seed-file={root}/munged.seed"], check=True)
    try:
        for daemon in ("slurmctld", "slurmd"):
            started = subprocess.run([tools[daemon], "-f", str(conf)], env=env, capture_output=True, text=True)
            if started.returncode:
                pytest.fail(f"{daemon} did not start: {started.stderr}; log: {root}/{daemon}.log")
        idle = lambda: "idle" in subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True,
                                                text=True).stdout
        wait_until(idle, "slurmd (its node idle in sinfo)", root / "slurmd.log")
        yield env
    finally:
        subprocess.run(["scancel", "--full", "--user", getpass.getuser()], env=env, capture_output=True)
        for daemon in ("slurmd", "slurmctld", "munged"):
            stop(root / f"{daemon}.pid")


SSHD_CONFIG = """\
Port {port}
ListenAddress 127.0.0.1
HostKey {root}/host_key
PidFile {root}/sshd.pid
AuthorizedKeysFile {root}/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
"""


@contextmanager
def ssh_server(root: Path):
    """Starts sshd on a free port of 127.0.0.1 that lets this user in with a key made here; yields (url prefix,
    client key file): `ssh://user@127.0.0.1:port`."""
    tools = require("sshd", "ssh-keygen")
    root.mkdir(parents=True)
    for name in ("host_key", "client_key"):
        subprocess.run([tools["ssh-keygen"], "-q", "-t", "ed25519", "-N", "", "-f", str(root / name)], check=True)
    shutil.copy(root / "client_key.pub", root / "authorized_keys")
    port = free_port()
    (root / "sshd_config").write_text(SSHD_CONFIG.format(port=port, root=root))
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation folder
    started = subprocess.run([tools["sshd"], "-f", str(root / "sshd_config"), "-E", str(root / "sshd.log")],
                             capture_output=True, text=True)
    if started.returncode:
        pytest.fail(f"sshd did not start: {started.stderr}; log: {root}/sshd.log")
    try:
        def listening():
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0
        wait_until(listening, "sshd", root / "sshd.log")
        yield f"ssh://{getpass.getuser()}@127.0.0.1:{port}", root / "client_key"
    finally:
        stop(root / "sshd.pid")
