"""One entry point per DVC stage; `dvc.yaml` runs them as `python -m stages.<name>`.

Under `make benchmark` (pipelines/preload.py) a stage runs in a fork of a process that has imported torch and the
engines' libraries already; this hands the command line over before the stage module imports anything.
"""

from pipelines import preload

preload.hand_over()
