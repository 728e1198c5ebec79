"""How the project's programs end: a user's mistake is one message and exit status 2, a bug a traceback.

Every stage and tool ends with `if __name__ == "__main__": run(main)`.
"""

import sys
from pathlib import Path


class UserError(Exception):
    """What a user gave (params.yaml, a dataset, an argument) is not something the program can work with; the
    message says what and what would be right. `run` prints it without a traceback."""


def user_errors() -> tuple:
    """The exception types that are a user's mistake. The dataset checks' error is looked up among the modules this
    program loaded rather than imported: importing it would load Datumaro into every program and make the
    dataset checks a DVC dep of every stage, and a program that never loaded it cannot raise it."""
    layout = sys.modules.get("pipelines.datasets.layout")
    return (UserError,) + ((layout.DatasetLayoutError,) if layout else ())


def run(main) -> None:
    """Calls `main()`. A user's mistake ends the program with its message on stderr, after the program's name, and
    exit status 2 (as argparse's usage errors do); any other exception keeps its traceback."""
    try:
        main()
    except user_errors() as error:
        print(f"{Path(sys.argv[0]).stem}: {error}", file=sys.stderr)
        raise SystemExit(2) from None
