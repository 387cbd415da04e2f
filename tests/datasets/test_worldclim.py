"""Tests of the WorldClim source (datasets/worldclim.py): the resumable, checksummed
download (`fetch`) from a local HTTP server, a local archive's checksum, and the real
layers.

Real WorldClim layers are read from ``../shared/data/worldclim-2.1-10m`` (or
``$COLLAPSE_WORLDCLIM_DIR``); those tests skip, saying why, where the folder is absent.
Everything else runs offline on small GeoTIFFs written by the tests.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from collapse_spectroscopy.datasets import worldclim
from collapse_spectroscopy.datasets.rasters import read_stack
from collapse_spectroscopy.datasets.split import spatial_block_split
from collapse_spectroscopy.datasets.stack import stack_samples
from collapse_spectroscopy.store.prepared import load_prepared
from dataset_helpers import assert_fails, run_cli, small_stack

WORLDCLIM_DIR = Path(
    os.environ.get(
        "COLLAPSE_WORLDCLIM_DIR",
        Path(__file__).resolve().parents[2].parent / "shared" / "data" / "worldclim-2.1-10m",
    )
)
PAPER_COUNTS = {"train": 499_599, "val": 153_897, "test": 154_027}

pytestmark = [
    # rasterio's own from_origin still uses Affine's `*`; not ours to fix.
    pytest.mark.filterwarnings("ignore:Use `@` matmul:PendingDeprecationWarning"),
    pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning"),
]

needs_worldclim = pytest.mark.skipif(
    not (WORLDCLIM_DIR / "wc2.1_10m_bio_1.tif").is_file(),
    reason=f"real WorldClim layers not found in {WORLDCLIM_DIR} (set COLLAPSE_WORLDCLIM_DIR)",
)


class _Server:
    """A local HTTP server with Range support, serving ``files`` (name -> bytes)."""

    def __init__(self, files):
        self.files = files
        self.ranges: list[str | None] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                body = outer.files.get(self.path.lstrip("/"))
                rng = self.headers.get("Range")
                outer.ranges.append(rng)
                if body is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                start = int(rng.split("=")[1].split("-")[0]) if rng else 0
                if start >= len(body) and rng:
                    self.send_response(416)
                    self.end_headers()
                    return
                self.send_response(206 if rng else 200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                self.wfile.write(body[start:])

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def fake_archive(tmp_path):
    paths, _ = small_stack(tmp_path / "src", names=[f"wc2.1_5m_bio_{i}" for i in range(1, 20)])
    archive = tmp_path / "src.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in paths:
            zf.write(p, arcname=p.name)
    data = archive.read_bytes()
    server = _Server({"wc2.1_5m_bio.zip": data})
    yield server, data
    server.close()


def test_fetch_download_with_resume_and_checksum(tmp_path, fake_archive, capsys):
    server, data = fake_archive
    digest = hashlib.sha256(data).hexdigest()
    dest = tmp_path / "dl"
    dest.mkdir()
    (dest / "wc2.1_5m_bio.zip.part").write_bytes(data[:1000])  # an interrupted download
    rc, out, err = run_cli(
        [
            "fetch",
            "--dest",
            dest,
            "--resolution",
            "5m",
            "--url",
            f"{server.url}/wc2.1_5m_bio.zip",
            "--sha256",
            digest,
            "--retries",
            "0",
            "--unpack",
        ],
        capsys,
    )
    assert rc == 0, err
    zip_line, folder_line = out.strip().splitlines()
    assert Path(zip_line) == (dest / "wc2.1_5m_bio.zip").resolve()
    unpacked = sorted(p.name for p in Path(folder_line).iterdir())
    assert unpacked == sorted(worldclim.layer_names("5m"))
    assert (dest / "wc2.1_5m_bio.zip").read_bytes() == data
    assert server.ranges == ["bytes=1000-"]  # resumed, not restarted
    assert not (dest / "wc2.1_5m_bio.zip.part").exists()
    # The downloaded archive then prepares like any other WorldClim source.
    rc, _, err = run_cli(
        [
            "prepare",
            "--out",
            tmp_path / "o",
            "--source",
            "worldclim",
            "--resolution",
            "5m",
            "--cache-dir",
            dest,
            "--sha256",
            digest,
        ],
        capsys,
    )
    assert rc == 0, err
    ds = load_prepared(tmp_path / "o" / "prepared.npz")
    assert ds.feature_names == [f"BIO{i}" for i in range(1, 20)]


def test_fetch_checksum_mismatch_leaves_nothing(tmp_path, fake_archive, capsys):
    server, _ = fake_archive
    dest = tmp_path / "dl"
    rc, _, err = run_cli(
        [
            "fetch",
            "--dest",
            dest,
            "--resolution",
            "5m",
            "--url",
            f"{server.url}/wc2.1_5m_bio.zip",
            "--sha256",
            "a" * 64,
            "--retries",
            "0",
        ],
        capsys,
    )
    assert rc == 2
    assert "checksum mismatch" in err and "wc2.1_5m_bio.zip" in err and "a" * 64 in err
    assert [p.name for p in dest.iterdir()] == []
    # The same through `prepare`: no output of the step remains either.
    assert_fails(
        [
            "prepare",
            "--out",
            tmp_path / "o",
            "--source",
            "worldclim",
            "--resolution",
            "5m",
            "--cache-dir",
            dest,
            "--url",
            f"{server.url}/wc2.1_5m_bio.zip",
            "--sha256",
            "a" * 64,
            "--retries",
            "0",
        ],
        capsys,
        tmp_path / "o",
        "checksum mismatch",
    )


def test_fetch_offline_says_what_to_download_and_where(tmp_path, capsys):
    import socket

    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/wc2.1_10m_bio.zip"
    dest = tmp_path / "dl"
    rc, _, err = run_cli(["fetch", "--dest", dest, "--url", url, "--retries", "0"], capsys)
    assert rc == 2
    assert url in err and "wc2.1_10m_bio.zip" in err
    assert str((dest / "wc2.1_10m_bio.zip").resolve()) in err


def test_bad_checksum_of_local_archive(tmp_path, capsys):
    archive = tmp_path / "wc2.1_10m_bio.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("x.txt", "not the archive")
    assert_fails(
        [
            "prepare",
            "--out",
            tmp_path / "o",
            "--source",
            "worldclim",
            "--path",
            archive,
            "--sha256",
            "0" * 64,
        ],
        capsys,
        tmp_path / "o",
        "checksum mismatch",
        "wc2.1_10m_bio.zip",
        "0" * 64,
    )


@needs_worldclim
@pytest.mark.worldclim
def test_real_worldclim(tmp_path, capsys):
    """808,053 cells x BIO1..BIO19, BIO7 = BIO5 - BIO6, split within 3 % of the paper's."""
    t0 = time.perf_counter()
    layers = worldclim.worldclim_layers(WORLDCLIM_DIR, "10m")
    samples = stack_samples(read_stack(layers))
    t1 = time.perf_counter()
    split = spatial_block_split(samples.lon, samples.lat, samples.area_km2)
    t2 = time.perf_counter()
    print(f"\nWorldClim 10m: verify+read+stack {t1 - t0:.2f} s, split {t2 - t1:.2f} s")
    assert samples.n == 808_053
    assert samples.feature_names == [f"BIO{i}" for i in range(1, 20)]
    x = samples.x.astype(np.float64)
    dev = x[:, 6] - (x[:, 4] - x[:, 5])
    assert np.max(np.abs(dev)) < 1e-4  # float32 rounding of values up to ~70 °C
    np.testing.assert_allclose(samples.area_km2.sum(), 1.5435e8, rtol=1e-3)
    counts = np.bincount(split.labels, minlength=3)
    for name, c in zip(("train", "val", "test"), counts, strict=True):
        assert abs(c / PAPER_COUNTS[name] - 1) < 0.03, (name, c, PAPER_COUNTS[name])
    # Through the CLI, with the prepared file loading fast.
    rc, out, err = run_cli(
        ["prepare", "--out", tmp_path / "wc", "--source", "worldclim", "--path", WORLDCLIM_DIR],
        capsys,
    )
    assert rc == 0, err
    t3 = time.perf_counter()
    ds = load_prepared(tmp_path / "wc" / "prepared.npz")
    print(f"load prepared.npz {time.perf_counter() - t3:.2f} s; {out.strip()}; {err.strip()}")
    assert [len(ds.x_train), len(ds.x_val), len(ds.x_test)] == counts.tolist()
    summary = json.loads((tmp_path / "wc" / "split_summary.json").read_text())
    assert summary["splits"]["train"]["samples"] == counts[0]
    assert summary["rule"] and summary["parameters"]["seed"] == 0


@needs_worldclim
@pytest.mark.worldclim
def test_real_worldclim_zip_matches_folder(tmp_path):
    archive = tmp_path / "wc2.1_10m_bio.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zf:
        for name in worldclim.layer_names("10m"):
            zf.write(WORLDCLIM_DIR / name, arcname=name)
    a = read_stack(worldclim.worldclim_layers(WORLDCLIM_DIR))
    b = read_stack(worldclim.worldclim_layers(archive))
    assert a.names == b.names
    np.testing.assert_array_equal(a.valid, b.valid)
    for la, lb in zip(a.layers, b.layers, strict=True):
        np.testing.assert_array_equal(la, lb)
