"""The fetch step against a real HTTP server on 127.0.0.1 serving small archives."""

import hashlib
import io
import json
import random
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import shutil
import subprocess

import pytest
import yaml

from pipelines.datasets import fetch, track
from tests.repos import ROOT


def tar_gz(files: dict) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def zip_bytes(files: dict) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buffer.getvalue()


class Server:
    """Serves `files` (path -> bytes) with range support; `cut_after` drops the connection once,
    after that many bytes; `ignore_ranges` answers every request with the whole file."""

    def __init__(self):
        self.files, self.requests, self.cut_after, self.ignore_ranges = {}, [], None, False
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                data = server.files.get(self.path)
                server.requests.append((self.path, self.headers.get("Range")))
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                if self.headers.get("Range") and not server.ignore_ranges:
                    start = int(self.headers["Range"].split("=")[1].split("-")[0])
                    if start >= len(data):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut_after is not None:
                    body, server.cut_after = body[: server.cut_after], None
                    self.wfile.write(body)
                    self.wfile.flush()
                    self.connection.close()
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}{path}"


@pytest.fixture
def server():
    s = Server()
    yield s
    s.httpd.shutdown()


# A Pets-like pair of archives; random bytes, so that the compressed archive is large enough to cut.
IMAGES = {"images/Abyssinian_1.jpg": random.Random(0).randbytes(200_000), "images/pug_1.jpg": random.Random(1).randbytes(100_000)}
ANNOTATIONS = {"annotations/trainval.txt": b"Abyssinian_1 1 1 1\n", "annotations/test.txt": b"pug_1 28 2 1\n"}


def pets_sources(server) -> list:
    server.files["/images.tar.gz"] = tar_gz(IMAGES)
    server.files["/annotations.tar.gz"] = tar_gz(ANNOTATIONS)
    return [{"url": server.url(path), "md5": hashlib.md5(server.files[path]).hexdigest()}
            for path in ("/images.tar.gz", "/annotations.tar.gz")]


def test_fetch_downloads_checks_and_unpacks_then_does_nothing(server, tmp_path):
    sources = pets_sources(server)
    dest = fetch.fetch_dataset("pets", sources, tmp_path)
    for name, data in {**IMAGES, **ANNOTATIONS}.items():
        assert (dest / name).read_bytes() == data
    assert json.loads((dest / fetch.MARKER).read_text())["archives"] == [s["md5"] for s in sources]
    assert len(server.requests) == 2
    fetch.fetch_dataset("pets", sources, tmp_path)
    assert len(server.requests) == 2  # already there: nothing downloaded again


def test_interrupted_download_resumes_with_a_range_request(server, tmp_path):
    sources = pets_sources(server)
    server.cut_after = 100_000
    with pytest.raises(fetch.FetchError, match="run again to resume"):
        fetch.fetch_dataset("pets", sources, tmp_path)
    part = tmp_path / ".downloads" / "images.tar.gz.part"
    assert part.stat().st_size == 100_000 and not (tmp_path / "pets").exists()
    dest = fetch.fetch_dataset("pets", sources, tmp_path)
    assert server.requests[1] == ("/images.tar.gz", "bytes=100000-")
    assert (dest / "images" / "Abyssinian_1.jpg").read_bytes() == IMAGES["images/Abyssinian_1.jpg"]


def test_server_without_ranges_restarts_cleanly(server, tmp_path):
    sources = pets_sources(server)
    server.cut_after = 50_000
    with pytest.raises(fetch.FetchError):
        fetch.fetch_dataset("pets", sources, tmp_path)
    server.ignore_ranges = True
    dest = fetch.fetch_dataset("pets", sources, tmp_path)
    assert (dest / "images" / "pug_1.jpg").read_bytes() == IMAGES["images/pug_1.jpg"]


def test_checksum_mismatch_deletes_the_file_and_says_so(server, tmp_path):
    sources = pets_sources(server)
    sources[1]["md5"] = "0" * 32
    with pytest.raises(fetch.FetchError, match=r"annotations.tar.gz from http://127.0.0.1:\d+/annotations.tar.gz: "
                                               r"md5 is [0-9a-f]{32}, params.yaml expects 0{32}; the file was deleted"):
        fetch.fetch_dataset("pets", sources, tmp_path)
    assert not (tmp_path / ".downloads" / "annotations.tar.gz").exists()
    assert not (tmp_path / "pets").exists()


def test_zip_with_top_folder_stripped_and_unpinned_checksum_recorded(server, tmp_path, capsys):
    files = {"wgisd-abc/data/CDY_2015.txt": b"0 0.5 0.5 0.1 0.1\n", "wgisd-abc/train_masked.txt": b"CDY_2015\n"}
    server.files["/abc.zip"] = zip_bytes(files)
    dest = fetch.fetch_dataset("wgisd", [{"url": server.url("/abc.zip"), "sha256": None, "strip": 1}], tmp_path)
    assert (dest / "data" / "CDY_2015.txt").read_bytes() == files["wgisd-abc/data/CDY_2015.txt"]
    digest = hashlib.sha256(server.files["/abc.zip"]).hexdigest()
    assert f"Add `sha256: {digest}`" in capsys.readouterr().err
    assert json.loads((dest / fetch.MARKER).read_text())["archives"] == [digest]


def test_unreachable_server_says_where_to_put_the_file(tmp_path):
    url = "http://127.0.0.1:9/pets/images.tar.gz"  # the discard port: nothing listens
    with pytest.raises(fetch.FetchError, match=r"cannot download .*images.tar.gz.*put the file at .*\.downloads/images.tar.gz"):
        fetch.fetch_dataset("pets", [{"url": url, "md5": "0" * 32}], tmp_path)


def dvc_repo(path):
    """A git repository with DVC in it, as a clone of the project is, with data/raw's .gitignore."""
    path.mkdir()
    for command in (["git", "init", "-q"], ["dvc", "init", "-q"]):
        subprocess.run(command, cwd=path, check=True)
    (path / "data" / "raw").mkdir(parents=True)
    shutil.copy(ROOT / "data" / "raw" / ".gitignore", path / "data" / "raw")
    return path


def test_cli_fetches_the_params_entries_and_puts_them_under_dvc(server, tmp_path, monkeypatch):
    sources = pets_sources(server)
    checkpoint = random.Random(2).randbytes(1000)
    server.files["/snapshot.pth"] = checkpoint
    snapshots = [{"url": server.url("/snapshot.pth"), "sha256": hashlib.sha256(checkpoint).hexdigest()[:8],
                  "unpack": False}]  # pinned by its first 8 digits, as OpenMMLab's file names carry them
    repo = dvc_repo(tmp_path / "repo")
    (repo / "params.yaml").write_text(json.dumps({"fetch": {"pets": sources, "snapshots": snapshots}}))
    monkeypatch.chdir(repo)
    fetch.main(["--params", "params.yaml"])
    raw = repo / "data" / "raw"
    assert (raw / "pets" / "annotations" / "test.txt").read_bytes() == ANNOTATIONS["annotations/test.txt"]
    assert (raw / "snapshots" / "snapshot.pth").read_bytes() == checkpoint
    assert not (raw / ".downloads").exists()
    # DVC tracks both folders; git sees their .dvc files and none of the data.
    status = subprocess.run(["git", "status", "--porcelain", "-uall"], cwd=repo, capture_output=True, text=True)
    untracked = {line[3:] for line in status.stdout.splitlines()}
    assert {"data/raw/pets.dvc", "data/raw/snapshots.dvc"} <= untracked
    assert not any(path.startswith(("data/raw/pets/", "data/raw/snapshots/")) for path in untracked), untracked
    for name in ("pets", "snapshots"):
        assert yaml.safe_load((raw / f"{name}.dvc").read_text())["outs"][0]["path"] == name


def test_a_users_own_folder_is_tracked_with_one_command(tmp_path, monkeypatch):
    repo = dvc_repo(tmp_path / "repo")
    (repo / "data" / "raw" / "my_coco" / "images").mkdir(parents=True)
    (repo / "data" / "raw" / "my_coco" / "images" / "a.jpg").write_bytes(b"jpeg")
    (repo / "data" / "raw" / ".downloads").mkdir()  # hidden folders are fetch's scratch space, never tracked
    monkeypatch.chdir(repo)
    track.main([])
    assert (repo / "data" / "raw" / "my_coco.dvc").is_file() and not (repo / "data" / "raw" / ".downloads.dvc").exists()
    status = subprocess.run(["dvc", "status", "--json"], cwd=repo, capture_output=True, text=True, check=True)
    assert json.loads(status.stdout) == {}, status.stdout  # tracked and up to date
    with pytest.raises(SystemExit, match="no folder data/raw/absent"):
        track.main(["absent"])
