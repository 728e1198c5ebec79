"""Stages that start without importing torch: `python -m pipelines.preload <command>` (what `make benchmark` runs)
imports the libraries the stages share once, in a server, and runs the command; each `python -m stages.<name>` the
command starts (DVC's stage commands) hands its command line to that server, which forks a process that runs it.

Why: a stage is a fresh Python process, and importing torch, torchvision, timm and an engine's libraries takes
3 to 6 seconds of it (measured: the default run's 72 torch stages spent about 5 minutes importing). A fork of a
process that has imported them starts in milliseconds.

What the fork runs is the stage as `python -m` runs it: its arguments, working folder, environment, umask and
stdin/stdout/stderr are the stage's own (the file descriptors travel over the socket), and the stage's exit status
is the client's. The project's own modules are never imported by the server: the fork imports them from the
stage's working folder, so a queued experiment's copy of the code runs its own code. Only third-party libraries
are preloaded: the names below and each engine's `preload.py` (LIBRARIES), read as files so that no engine's code
(its registrations, mmcv's ops) runs in the server. A stage whose interpreter, `sys.path` or environment differs
from the server's (a library reads settings such as OMP_NUM_THREADS when it is imported) runs by itself, as it
would without the server, and says why on stderr; so does one started any other way than `python -m`.

Signals: SIGINT, SIGTERM and SIGHUP sent to the stage's process are passed on to the fork; a fork whose client
has gone (killed with SIGKILL) kills itself and what it started.
"""

import atexit
import importlib
import json
import os
import runpy
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

ADDRESS = "BENCH_PRELOAD"  # the environment variable holding the server's socket path
SHARED = ("numpy", "torch", "openvino", "PIL.Image", "cv2")
PROJECT = ("pipelines", "stages", "benchmarks", "tests")  # never preloaded: the fork imports them fresh
# Variables a shell or DVC sets per command; they do not change what an import does.
PER_COMMAND = {"PWD", "OLDPWD", "SHLVL", "_", ADDRESS}
PER_COMMAND_PREFIXES = ("DVC_",)
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
STDIO = 3
# The server's environment before it imported anything, and what the imports changed in it (torch and cv2 set
# variables when imported, as they would in the stage's own process): set by `serve`.
IMPORTED_UNDER: dict = {}
IMPORTS_SET: dict = {}


def libraries(root: Path = Path(__file__).parent) -> tuple[str, ...]:
    """The shared libraries, then each engine's (pipelines/engines/<name>/preload.py's LIBRARIES)."""
    names = list(SHARED)
    for listing in sorted(root.glob("engines/*/preload.py")):
        names += [n for n in runpy.run_path(str(listing))["LIBRARIES"] if n not in names]
    return tuple(names)


def differences(theirs: dict, ours: dict) -> list[str]:
    """The environment variables whose values differ between a stage and the server, those a shell or DVC sets
    per command aside."""
    def relevant(name):
        return name not in PER_COMMAND and not name.startswith(PER_COMMAND_PREFIXES)
    return sorted(n for n in set(theirs) | set(ours) if relevant(n) and theirs.get(n) != ours.get(n))


def request() -> dict:
    """What the server needs to run this process's command as `python -m` would."""
    umask = os.umask(0)
    os.umask(umask)
    return {"executable": sys.executable, "path": sys.path[1:], "argv": sys.orig_argv, "cwd": os.getcwd(),
            "env": dict(os.environ), "umask": umask}


def refusal(asked: dict) -> str | None:
    """Why a stage cannot run in a fork of this server (None: it can)."""
    if asked["executable"] != sys.executable or asked["path"] != sys.path[1:]:
        return f"its interpreter ({asked['executable']}) or sys.path differs from the preload server's"
    if asked["argv"][1:2] != ["-m"] or len(asked["argv"]) < 3:
        return "it was not started as `python -m <module>`"
    changed = differences(asked["env"], IMPORTED_UNDER)
    if changed:
        return f"its environment differs from the preload server's in {', '.join(changed)}"
    return None


# --- the stage's side ------------------------------------------------------------------------------------------

def hand_over() -> None:
    """Runs this process's command in a fork of the preload server, when one serves this environment, and exits
    with the fork's status; returns (and the stage runs here) when none does or it refuses."""
    address = os.environ.get(ADDRESS)
    if not address or sys.orig_argv[1:2] != ["-m"]:
        return
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.connect(address)
        body = json.dumps(request()).encode()
        socket.send_fds(connection, [len(body).to_bytes(8, "big")], [0, 1, 2])
        connection.sendall(body)
    except OSError:
        return  # the server has ended (or lives on another machine), or a stdio stream is closed: run here
    replies = connection.makefile("r")
    first = replies.readline().split(" ", 1)
    if first[0] != "pid":
        why = first[-1].strip() or "the preload server did not answer"
        print(f"preload: runs by itself: {why}", file=sys.stderr)
        return
    fork, received = int(first[1]), []

    def forward(number, frame):
        received.append(number)
        os.kill(fork, number)
    for forwarded in FORWARDED:
        signal.signal(forwarded, forward)
    last = replies.readline().split()
    if last[:1] == ["exit"]:
        os._exit(int(last[1]))
    if received:  # the fork ended of the signal it was passed: so does this process, as the stage would have
        signal.signal(received[-1], signal.SIG_DFL)
        os.kill(os.getpid(), received[-1])
    print(f"preload: the fork running {sys.orig_argv[2]} ended without an exit status", file=sys.stderr)
    os._exit(1)


# --- the server's side -----------------------------------------------------------------------------------------

def receive(connection: socket.socket) -> tuple[dict, list[int]]:
    """A stage's request and its stdin/stdout/stderr."""
    header, fds, _, _ = socket.recv_fds(connection, 8, STDIO)
    size, body = int.from_bytes(header, "big"), b""
    while len(body) < size:
        chunk = connection.recv(size - len(body))
        if not chunk:
            raise ConnectionError("the stage closed its connection mid-request")
        body += chunk
    return json.loads(body), fds


def watch(connection: socket.socket, finished: threading.Event) -> None:
    """Kills this fork and what it started when the stage's process goes away before the stage has finished (its
    end of the connection closes): nobody would read its output or status."""
    def wait():
        connection.recv(1)
        if not finished.is_set():
            os.killpg(0, signal.SIGKILL)
    threading.Thread(target=wait, daemon=True).start()


def become(asked: dict, fds: list[int]) -> None:
    """Turns this fork into the stage's process: its stdio, folder, environment, umask and `python -m` state."""
    os.setsid()  # its own process group: the terminal's signals reach it through the stage's process only
    for number in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(asked["cwd"])
    os.environ.clear()
    os.environ.update({k: v for k, v in asked["env"].items() if k != ADDRESS})  # the fork is the stage itself
    for name, value in IMPORTS_SET.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    os.umask(asked["umask"])
    for name in [n for n in sys.modules if n.split(".")[0] in PROJECT]:
        del sys.modules[name]
    sys.path[0] = asked["cwd"]
    importlib.invalidate_caches()  # the folder's listing may have changed since the server looked
    if "numpy" in sys.modules:  # numpy seeds its global generator once per process, at import
        sys.modules["numpy"].random.seed()
    sys.orig_argv = asked["argv"]
    sys.argv = [asked["argv"][2]] + asked["argv"][3:]


def run_stage(module: str) -> int:
    """Runs `module` as `python -m` does and returns the exit status an interpreter would end with."""
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        status = 0
    except SystemExit as end:
        status = end.code if isinstance(end.code, int) else (0 if end.code is None else 1)
        if not isinstance(end.code, (int, type(None))):
            print(end.code, file=sys.stderr)
    except KeyboardInterrupt:
        traceback.print_exc()
        status = 128 + signal.SIGINT
    except BaseException:  # noqa: B036 - the interpreter's own last resort: print it, exit 1
        traceback.print_exc()
        status = 1
    # The interpreter's own ending, in its order: stop and join the threads (concurrent.futures' workers are told
    # to stop by a hook of threading's, not of atexit's), then the atexit functions.
    threading._shutdown()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    return status


def serve_one(connection: socket.socket) -> None:
    """In a fork of the server: runs one stage (or says why not) and exits."""
    status = 1
    try:
        asked, fds = receive(connection)
        why = refusal(asked)
        if why:
            connection.sendall(f"refused {why}\n".encode())
            status = 0
        else:
            become(asked, fds)
            connection.sendall(f"pid {os.getpid()}\n".encode())
            finished = threading.Event()
            watch(connection, finished)
            status = run_stage(asked["argv"][2])
            finished.set()
            connection.sendall(f"exit {status}\n".encode())
    finally:
        os._exit(status)


def serve(listener: socket.socket) -> None:
    """The server: imports the libraries, then forks one process per stage that connects."""
    started = time.perf_counter()
    IMPORTED_UNDER.update(os.environ)
    loaded = []
    for name in libraries():
        try:
            __import__(name)
            loaded.append(name)
        except ImportError:  # an engine that is not installed here: its stages fail by themselves, as without us
            pass
    IMPORTS_SET.update({name: os.environ.get(name) for name in set(os.environ) | set(IMPORTED_UNDER)
                        if os.environ.get(name) != IMPORTED_UNDER.get(name)})
    print(f"preload: {', '.join(loaded)} imported in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # forks are reaped by the kernel
    while True:
        connection, _ = listener.accept()
        if os.fork() == 0:
            listener.close()
            serve_one(connection)
        connection.close()


def run_command(command: list[str], env: dict) -> int:
    """Runs the command to its end. A Ctrl-C reaches the command too (it is in the terminal's process group):
    this waits for it to stop as it does on Ctrl-C, rather than killing it; SIGTERM is passed on."""
    process = subprocess.Popen(command, env=env)
    signal.signal(signal.SIGTERM, lambda number, frame: process.send_signal(number))
    while True:
        try:
            return process.wait()
        except KeyboardInterrupt:
            continue


def main() -> None:
    """`python -m pipelines.preload <command> [args]`: runs the command with a preload server beside it."""
    if len(sys.argv) < 2:
        raise SystemExit("usage: python -m pipelines.preload <command> [args...]  (e.g. dvc repro)")
    folder = tempfile.mkdtemp(prefix="isbench-preload-")
    address = os.path.join(folder, "socket")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(address)
    listener.listen(64)  # stages that connect while the server imports wait here
    server = os.fork()
    if server == 0:
        try:
            serve(listener)
        finally:
            os._exit(0)
    listener.close()
    try:
        status = run_command(sys.argv[1:], {**os.environ, ADDRESS: address})
    finally:
        os.kill(server, signal.SIGTERM)
        os.waitpid(server, 0)
        os.unlink(address)
        os.rmdir(folder)
    raise SystemExit(status)


if __name__ == "__main__":
    main()
