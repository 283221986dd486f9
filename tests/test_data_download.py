"""Downloading, verifying and unpacking — against a local http.server on 127.0.0.1, never the
network. Checksums are overridden to match the tiny fake archives."""
from __future__ import annotations

import hashlib
import http.server
import io
import socket
import stat
import tarfile
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from data_fakes import make_tar_gz, write_fake_cifar10, write_fake_mnist, write_fake_svhn
from gaaf.data import CIFAR10, MNIST, SVHN, load_dataset
from gaaf.errors import UserError
from gaaf.io import current_umask


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _leftovers(root: Path) -> list[Path]:
    """Temp files/folders a download or extraction might leave behind (names start with '.')."""
    return [p for p in root.rglob(".*")]


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A local HTTP server serving tmp_path/served; GAAF_DATA_MIRROR points at it."""
    served = tmp_path / "served"
    served.mkdir()
    requests: list[str] = []
    lie_about_length: set[str] = set()  # paths served with a Content-Length larger than the body

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(served), **kw)

        def log_message(self, *a):  # keep pytest output clean
            pass

        def do_GET(self):
            requests.append(self.path)
            if self.path in lie_about_length:
                body = (served / self.path.lstrip("/")).read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body) + 1000))
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = True
                return
            super().do_GET()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("GAAF_DATA_MIRROR", f"http://127.0.0.1:{server.server_address[1]}/")
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(var, "127.0.0.1,localhost")
    yield SimpleNamespace(dir=served, requests=requests, lie_about_length=lie_about_length)
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def _serve_fake_cifar10(tmp_path: Path, served: Path, monkeypatch) -> str:
    src = write_fake_cifar10(tmp_path / "src", n_train=25, n_test=10, seed=7)
    md5 = make_tar_gz(src, "cifar-10-batches-py", served / "cifar-10-python.tar.gz")
    monkeypatch.setattr(CIFAR10, "archive_md5", md5)
    return md5


def test_cifar10_download_extract_then_idempotent(tmp_path, mirror, monkeypatch):
    _serve_fake_cifar10(tmp_path, mirror.dir, monkeypatch)
    root = tmp_path / "data"
    s = load_dataset("cifar10", root, quiet=True, normalize="none")
    assert s.n_train == 25 and s.n_test == 10
    assert mirror.requests == ["/cifar-10-python.tar.gz"]
    assert (root / "cifar-10-python.tar.gz").is_file() and (root / "cifar-10-batches-py" / "test_batch").is_file()
    assert _leftovers(root) == []
    readable = 0o666 & ~current_umask()  # the archive gets the mode open() would give, not mkstemp's 0o600
    assert stat.S_IMODE((root / "cifar-10-python.tar.gz").stat().st_mode) == readable
    again = load_dataset("cifar10", root, download=False, normalize="none")  # no archive needed, no request
    assert len(mirror.requests) == 1 and again.x_train.equal(s.x_train)
    load_dataset("cifar10", root, quiet=True)
    assert len(mirror.requests) == 1


def test_bad_md5_download_is_not_kept(tmp_path, mirror, monkeypatch):
    _serve_fake_cifar10(tmp_path, mirror.dir, monkeypatch)
    monkeypatch.setattr(CIFAR10, "archive_md5", "0" * 32)
    root = tmp_path / "data"
    with pytest.raises(UserError) as e:
        load_dataset("cifar10", root, quiet=True)
    msg = str(e.value)
    assert "\n" not in msg and "md5" in msg and "0" * 32 in msg and str(root / "cifar-10-python.tar.gz") in msg
    assert not (root / "cifar-10-python.tar.gz").exists() and not (root / "cifar-10-batches-py").exists()
    assert _leftovers(root) == []


def test_truncated_transfer_is_detected(tmp_path, mirror, monkeypatch):
    _serve_fake_cifar10(tmp_path, mirror.dir, monkeypatch)
    mirror.lie_about_length.add("/cifar-10-python.tar.gz")
    root = tmp_path / "data"
    with pytest.raises(UserError) as e:
        load_dataset("cifar10", root, quiet=True)
    assert "cifar-10-python.tar.gz" in str(e.value) and "\n" not in str(e.value)
    assert not (root / "cifar-10-python.tar.gz").exists() and _leftovers(root) == []


def test_missing_file_on_server_404(tmp_path, mirror):
    root = tmp_path / "data"
    with pytest.raises(UserError) as e:
        load_dataset("cifar10", root, quiet=True)
    msg = str(e.value)
    assert "could not download" in msg and "404" in msg and str(root / "cifar-10-python.tar.gz") in msg


def test_unreachable_mirror_gives_one_line_with_url_and_path(tmp_path, monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("GAAF_DATA_MIRROR", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    root = tmp_path / "data"
    with pytest.raises(UserError) as e:
        load_dataset("mnist", root, quiet=True)
    msg = str(e.value)
    assert "\n" not in msg
    assert f"http://127.0.0.1:{port}/train-images-idx3-ubyte.gz" in msg
    assert str(root / "mnist" / "train-images-idx3-ubyte.gz") in msg
    assert not any(p.is_file() for p in root.rglob("*"))


def test_corrupt_archive_with_matching_md5_is_reported(tmp_path, monkeypatch):
    root = tmp_path / "data"
    root.mkdir()
    archive = root / "cifar-10-python.tar.gz"
    archive.write_bytes(b"\x1f\x8b\x08\x00" + b"not really gzip" * 100)
    monkeypatch.setattr(CIFAR10, "archive_md5", _md5(archive))
    with pytest.raises(UserError) as e:
        load_dataset("cifar10", root, download=False)
    assert str(archive) in str(e.value) and "delete" in str(e.value)
    assert not (root / "cifar-10-batches-py").exists() and _leftovers(root) == []


def test_truncated_archive_is_caught_by_md5(tmp_path, monkeypatch):
    src = write_fake_cifar10(tmp_path / "src")
    root = tmp_path / "data"
    root.mkdir()
    archive = root / "cifar-10-python.tar.gz"
    md5 = make_tar_gz(src, "cifar-10-batches-py", archive)
    monkeypatch.setattr(CIFAR10, "archive_md5", md5)
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(UserError, match=f"has md5 .*expected {md5}"):
        load_dataset("cifar10", root, download=False)
    # and with the check bypassed, unpacking a truncated archive still fails cleanly
    monkeypatch.setattr(CIFAR10, "archive_md5", _md5(archive))
    with pytest.raises(UserError, match="cannot read"):
        load_dataset("cifar10", root, download=False)
    assert not (root / "cifar-10-batches-py").exists() and _leftovers(root) == []


def _tar_with(archive: Path, member: tarfile.TarInfo, data: bytes = b"") -> None:
    with tarfile.open(archive, "w:gz") as tar:
        ok = tarfile.TarInfo("cifar-10-batches-py/readme")
        ok.size = 2
        tar.addfile(ok, io.BytesIO(b"hi"))
        member.size = len(data) if member.isfile() else 0
        tar.addfile(member, io.BytesIO(data) if member.isfile() else None)


@pytest.mark.parametrize("member", [
    lambda: tarfile.TarInfo("cifar-10-batches-py/../../escape.txt"),
    lambda: tarfile.TarInfo("/tmp/absolute.txt"),
    lambda: _symlink("cifar-10-batches-py/data_batch_1", "/etc/passwd"),
])
def test_unsafe_tar_members_are_refused(tmp_path, monkeypatch, member):
    root = tmp_path / "deep" / "data"
    root.mkdir(parents=True)
    archive = root / "cifar-10-python.tar.gz"
    _tar_with(archive, member(), b"x")
    monkeypatch.setattr(CIFAR10, "archive_md5", _md5(archive))
    with pytest.raises(UserError, match="unsafe member"):
        load_dataset("cifar10", root, download=False)
    assert not (root / "cifar-10-batches-py").exists() and _leftovers(root) == []
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "deep" / "escape.txt").exists()


def _symlink(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    return info


def test_incomplete_folder_is_replaced_from_archive(tmp_path, monkeypatch):
    src = write_fake_cifar10(tmp_path / "src", n_train=25, n_test=10)
    root = tmp_path / "data"
    root.mkdir()
    md5 = make_tar_gz(src, "cifar-10-batches-py", root / "cifar-10-python.tar.gz")
    monkeypatch.setattr(CIFAR10, "archive_md5", md5)
    (root / "cifar-10-batches-py").mkdir()
    (root / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"half")  # an interrupted copy
    s = load_dataset("cifar10", root, download=False)
    assert s.n_train == 25 and _leftovers(root) == []


def test_archive_without_the_folder(tmp_path, monkeypatch):
    root = tmp_path / "data"
    root.mkdir()
    other = tmp_path / "other"
    (other / "something-else").mkdir(parents=True)
    (other / "something-else" / "f").write_text("x")
    md5 = make_tar_gz(other, "something-else", root / "cifar-10-python.tar.gz")
    monkeypatch.setattr(CIFAR10, "archive_md5", md5)
    with pytest.raises(UserError, match="no folder cifar-10-batches-py/"):
        load_dataset("cifar10", root, download=False)


def test_mnist_download_via_mirror(tmp_path, mirror, monkeypatch):
    write_fake_mnist(tmp_path / "src", n_train=30, n_test=10, seed=4)
    files = {}
    for split, pair in MNIST.files.items():
        files[split] = []
        for fname, _ in pair:
            (mirror.dir / fname).write_bytes((tmp_path / "src" / "mnist" / fname).read_bytes())
            files[split].append((fname, _md5(mirror.dir / fname)))
        files[split] = tuple(files[split])
    monkeypatch.setattr(MNIST, "files", files)
    root = tmp_path / "data"
    s = load_dataset("mnist", root, quiet=True)
    assert s.n_train == 30 and s.n_test == 10 and len(mirror.requests) == 4
    assert sorted(p.name for p in (root / "mnist").iterdir()) == sorted(f for pair in files.values() for f, _ in pair)
    load_dataset("mnist", root, download=False)
    assert len(mirror.requests) == 4


def test_svhn_download_via_mirror(tmp_path, mirror, monkeypatch):
    pytest.importorskip("scipy")
    write_fake_svhn(tmp_path / "src", n_train=12, n_test=6, seed=1)
    files = {}
    for split, (fname, _) in SVHN.files.items():
        (mirror.dir / fname).write_bytes((tmp_path / "src" / "svhn" / fname).read_bytes())
        files[split] = (fname, _md5(mirror.dir / fname))
    monkeypatch.setattr(SVHN, "files", files)
    s = load_dataset("svhn", tmp_path / "data", quiet=True)
    assert s.n_train == 12 and s.n_test == 6 and sorted(mirror.requests) == ["/test_32x32.mat", "/train_32x32.mat"]


def test_official_urls_and_checksums():
    # the published values (torchvision's datasets/{cifar,svhn,mnist}.py carry the same)
    assert CIFAR10.base_url + CIFAR10.archive == "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    assert CIFAR10.archive_md5 == "c58f30108f718f92721af3b95e74349a"
    from gaaf.data import CIFAR100
    assert CIFAR100.archive_md5 == "eb9058c3a382ffc7106e4002c42a8d85"
    assert SVHN.files["train"] == ("train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373")
    assert SVHN.files["test"] == ("test_32x32.mat", "eb5a983be6a315427106f1b164d9cef3")
    assert dict(MNIST.files["train"] + MNIST.files["test"]) == {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    }
