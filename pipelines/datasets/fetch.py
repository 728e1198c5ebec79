"""Downloads the datasets that have public archives and the COCO snapshots the templates start from, checks them,
unpacks them into their owners' layout and puts them under DVC (pipelines/datasets/track.py).

    python -m pipelines.datasets.fetch --out data/raw pets wgisd snapshots

`fetch` in params.yaml lists each folder's files: url, checksum (`md5` or `sha256`; a sha256 may be pinned by
its first 8 or more digits), how many leading folders to strip when unpacking, and `unpack: false` for a file
kept as it is (a checkpoint). A download goes to `<out>/.downloads/<name>.part` and resumes from there after an
interruption (an HTTP range request; a server that ignores ranges makes it restart from zero). A finished
download whose checksum differs is deleted and reported. Each folder is filled in a fresh folder that replaces
`<out>/<folder>` only when complete, with `.fetched.json` recording the files it came from; a second run with
the same files does nothing. Then each folder is `dvc add`ed, so that queued experiments and other machines
get it (`--no-track` leaves that out). Cityscapes needs an account and is downloaded by hand (see the README).
"""

import argparse
import hashlib
import json
import shutil
import sys
import tarfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import yaml
from tqdm import tqdm

from pipelines.cli import run
from pipelines.config import PARAMS_FILE
from pipelines.datasets import track

CHUNK = 1 << 20
MARKER = ".fetched.json"


class FetchError(Exception):
    """A download failed, or what arrived is not what params.yaml pins."""


def file_name(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def checksum(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _expected(archive: dict) -> tuple[str, str | None]:
    """(algorithm, hex digest) that params.yaml pins for `archive`; (sha256, None) where it pins none."""
    for algorithm in ("sha256", "md5"):
        if archive.get(algorithm):
            return algorithm, archive[algorithm].lower()
    return "sha256", None


def matches(actual: str, algorithm: str, pinned: str) -> bool:
    """Whether digest `actual` is the pinned one; a sha256 may be pinned by its first 8 or more digits."""
    return actual == pinned or (algorithm == "sha256" and len(pinned) >= 8 and actual.startswith(pinned))


def download(url: str, target: Path, timeout: float = 60) -> None:
    """Downloads `url` to `target`, resuming a `<target>.part` left by an interrupted run."""
    part = target.with_name(target.name + ".part")
    done = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={done}-"} if done else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and done:  # the part is already whole; its checksum decides
            part.rename(target)
            return
        raise FetchError(f"cannot download {url}: HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError) as error:
        raise FetchError(f"cannot download {url}: {getattr(error, 'reason', error)}. Without network, put the "
                         f"file at {target} yourself and run again: it is checked like a download") from None
    with response:
        resumed = response.status == 206
        if done and not resumed:
            print(f"{url}: the server ignores ranges, restarting the download", file=sys.stderr)
        size = response.headers.get("Content-Length")
        total = int(size) + (done if resumed else 0) if size else None
        with open(part, "ab" if resumed else "wb") as out, \
                tqdm(total=total, initial=done if resumed else 0, unit="B", unit_scale=True,
                     desc=file_name(url), mininterval=1) as progress:
            try:
                for block in iter(lambda: response.read(CHUNK), b""):
                    out.write(block)
                    progress.update(len(block))
            except OSError as error:
                raise FetchError(f"download of {url} interrupted ({error}); run again to resume from "
                                 f"{part.stat().st_size} bytes") from None
    if total is not None and part.stat().st_size != total:
        raise FetchError(f"download of {url} stopped at {part.stat().st_size} of {total} bytes; run again to resume")
    part.rename(target)


def fetch_archive(archive: dict, downloads: Path) -> tuple[Path, str]:
    """(archive file, its checksum), downloaded (or resumed) unless already there, and checked."""
    algorithm, expected = _expected(archive)
    target = downloads / file_name(archive["url"])
    downloads.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        download(archive["url"], target)
    actual = checksum(target, algorithm)
    if expected is None:
        print(f"WARNING: params.yaml pins no checksum for {archive['url']}; what arrived has sha256 {actual}. "
              f"Add `sha256: {actual}` to its entry to check every later download against it.", file=sys.stderr)
    elif not matches(actual, algorithm, expected):
        target.unlink()
        raise FetchError(f"{target.name} from {archive['url']}: {algorithm} is {actual}, params.yaml expects "
                         f"{expected}; the file was deleted, run again to download it anew")
    return target, actual


def unpack(archive: Path, into: Path, strip: int = 0) -> None:
    """Extracts a .tar(.gz/.bz2/.xz) or .zip into `into`, dropping `strip` leading folders of every path."""
    into.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            members = [(m, m.filename) for m in z.infolist() if not m.is_dir()]
            for member, name in members:
                path = _stripped(name, strip)
                if path:
                    (into / path).parent.mkdir(parents=True, exist_ok=True)
                    with z.open(member) as source, open(into / path, "wb") as target:
                        shutil.copyfileobj(source, target, CHUNK)
        return
    with tarfile.open(archive) as tar:
        for member in tar:
            path = _stripped(member.name, strip)
            if path and (member.isfile() or member.isdir()):
                member.name = path
                tar.extract(member, into, filter="data")  # refuses absolute paths, links out of `into`


def _stripped(name: str, strip: int) -> str:
    parts = [p for p in name.split("/") if p not in ("", ".")]
    return "/".join(parts[strip:])


def fetch_dataset(name: str, archives: list, out: Path) -> Path:
    """Downloads, checks and unpacks every archive of dataset folder `name` into `<out>/<name>`."""
    dest = out / name
    pins = [_expected(a) for a in archives]
    marker = dest / MARKER
    if marker.is_file():
        recorded = json.loads(marker.read_text())
        if recorded["urls"] == [a["url"] for a in archives] and \
                all(pin is None or matches(got, algorithm, pin)
                    for (algorithm, pin), got in zip(pins, recorded["archives"])):
            print(f"{dest}: already fetched")
            return dest
    files, sums = zip(*[fetch_archive(archive, out / ".downloads") for archive in archives])
    staging = out / f".{name}.unpacking"
    shutil.rmtree(staging, ignore_errors=True)  # what an interrupted unpack left
    for archive, path in zip(archives, files):
        if archive.get("unpack", True):
            print(f"unpacking {path.name} into {dest}")
            unpack(path, staging, archive.get("strip", 0))
        else:
            staging.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, staging / path.name)
    (staging / MARKER).write_text(json.dumps({"archives": list(sums), "urls": [a["url"] for a in archives]}, indent=2))
    if dest.exists():
        shutil.rmtree(dest)
    staging.rename(dest)
    return dest


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", help="dataset folders to fetch (keys of `fetch` in params.yaml); default all")
    p.add_argument("--out", type=Path, default=Path("data/raw"), help="where the dataset folders go")
    p.add_argument("--params", type=Path, default=PARAMS_FILE)
    p.add_argument("--keep-archives", action="store_true", help="keep the downloaded archives after unpacking")
    p.add_argument("--no-track", action="store_true", help="leave the folders out of DVC (`dvc add`)")
    return p


def main(args=None) -> None:
    args = parser().parse_args(args)
    sources = yaml.safe_load(args.params.read_text()).get("fetch", {})
    unknown = [n for n in args.names if n not in sources]
    if unknown:
        sys.exit(f"fetch: {unknown} not under `fetch` in {args.params}; known: {sorted(sources)}")
    fetched = []
    for name in args.names or sorted(sources):
        try:
            fetched.append(fetch_dataset(name, sources[name], args.out))
        except FetchError as error:
            sys.exit(f"fetch {name}: {error}")
    if not args.keep_archives:
        shutil.rmtree(args.out / ".downloads", ignore_errors=True)
    if args.no_track:
        return
    if not args.out.resolve().is_relative_to(Path.cwd().resolve()):
        print(f"{args.out} is outside this repository: not put under DVC (docs/datasets.md)")
        return
    track.report(track.track(fetched))


if __name__ == "__main__":
    run(main)
