"""One entry point per DVC stage; `dvc.yaml` runs them as `python -m stages.<name>`."""
