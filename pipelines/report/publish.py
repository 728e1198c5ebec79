"""Writing the report folder all at once: a report stage that fails or is killed leaves the previous one whole."""

import shutil
from pathlib import Path

from pipelines.files import put_in_place, temporary


def publish(out_dir: Path, texts: dict, drawings: dict, folders: dict) -> None:
    """Writes `texts` (relative path -> str), `drawings` (file name -> function drawing into a path) and `folders`
    (folder name -> {file name: source file to copy}) into `out_dir`. Everything is staged beside its final place
    first (pipelines.files names where) and only then moved there; a folder is replaced whole, so none of its files
    is stale."""
    out_dir.mkdir(parents=True, exist_ok=True)
    staged = []
    for name, content in folders.items():
        tmp = temporary(out_dir / name)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for file_name, source in content.items():
            shutil.copyfile(source, tmp / file_name)
        staged.append((tmp, out_dir / name))
    for name, text in texts.items():
        final = out_dir / name
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = temporary(final)
        tmp.write_text(text)
        staged.append((tmp, final))
    for name, draw in drawings.items():
        tmp = temporary(out_dir / name)
        draw(tmp)
        staged.append((tmp, out_dir / name))
    for tmp, final in staged:
        put_in_place(tmp, final)
