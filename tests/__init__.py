"""The project's tests (a package, so that `tests.conftest` is this folder's even where an installed
distribution also ships a top-level `tests`, as modelindex, which mmpretrain needs, does)."""
