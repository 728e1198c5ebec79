"""A program the preload tests start as `python -m tests.preload_probe <file> [status]`: it hands itself over as a
stage does, then writes its process id and what it can see into <file> and exits with [status] (default 0), or
with `wait`, sleeps until killed."""

from pipelines import preload

preload.hand_over()

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

if __name__ == "__main__":
    out, action = sys.argv[1], (sys.argv[2:] or ["0"])[0]
    seen = {"pid": os.getpid(), "cwd": os.getcwd(), "argv": sys.argv, "preload": os.environ.get(preload.ADDRESS),
            "torch_already": "torch" in sys.modules, "probe": os.environ.get("PROBE")}
    with open(out, "w") as file:
        json.dump(seen, file)
    print("probe on stdout")
    print("probe on stderr", file=sys.stderr)
    # A pool left running, as OpenVINO's conversion leaves one (held by a module, so never collected): the fork must
    # end as an interpreter does, stopping it.
    from concurrent.futures import ThreadPoolExecutor
    sys.modules["json"].probe_pool = ThreadPoolExecutor(2)
    sys.modules["json"].probe_pool.submit(print, "pool on stdout")
    if action == "wait":
        time.sleep(600)
    raise SystemExit(int(action))
