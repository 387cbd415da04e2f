"""WorldClim 2.1 bioclimatic variables: download, verification, the 19 layers.

See docs/science.md §5.

The official archive ``wc2.1_<res>_bio.zip`` holds 19 GeoTIFFs
``wc2.1_<res>_bio_<i>.tif`` (i = 1..19); they become features ``BIO1`` .. ``BIO19`` in that
order. The archive is fetched with :mod:`pooch` (retries, progress bar, SHA-256 check)
through a downloader that resumes a partial download from ``<file>.part``.

Verification. WorldClim does not publish archive checksums. A SHA-256 for the archive
can be given (``dataset.sha256``) and is then checked by pooch; in any case, at the
10-arc-minute resolution each of the 19 GeoTIFFs (in the archive or in a folder) is
checked against the SHA-256 of the official file (:data:`LAYER_SHA256`), so a corrupt,
truncated or foreign file is caught before it becomes data.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sys
import zipfile
import zlib
from pathlib import Path

from collapse_spectroscopy.datasets.rasters import LayerSource, _file_layer, open_zip, zip_layer
from collapse_spectroscopy.errors import InputError
from collapse_spectroscopy.store.atomic import atomic_directory
from collapse_spectroscopy.store.digest import file_sha256

log = logging.getLogger(__name__)

BASE_URL = "https://geodata.ucdavis.edu/climate/worldclim/2_1/base"
RESOLUTIONS = ("10m", "5m", "2.5m", "30s")
N_BIO = 19
FEATURE_NAMES = [f"BIO{i}" for i in range(1, N_BIO + 1)]

#: SHA-256 of the 19 official 10-arc-minute GeoTIFFs of WorldClim 2.1 (``wc2.1_10m_bio.zip``).
LAYER_SHA256 = {
    "10m": {
        "wc2.1_10m_bio_1.tif": "f61633ffac9d44ed220442b3f7171a06f931726668bfbe9d07d53700b257d8cf",
        "wc2.1_10m_bio_2.tif": "b9068d839a0f5973ff171eb230bccf920c00c8a357356a575ecae1736ea9f218",
        "wc2.1_10m_bio_3.tif": "56f380fd589be740d1d122fa86956d147cf1d9126d76cad4f6eef3df4987f75d",
        "wc2.1_10m_bio_4.tif": "a1bacac2f3d645284ee506fdde14226d7c2cafd5997a2af2f802f45e3550ae19",
        "wc2.1_10m_bio_5.tif": "32e02d85868734c32547da70cf9c620f4739a3cf5dbc4f2b751e16ebb2338ae1",
        "wc2.1_10m_bio_6.tif": "7cc728620cba21564bbed19d5fe6268a0ef0bd2578b757a3acf45ef65b8b4007",
        "wc2.1_10m_bio_7.tif": "f43241c128d8f85222e2d971808f19eb8115ce012b8aa23c51aab3797b47fe5d",
        "wc2.1_10m_bio_8.tif": "e74665f9c39a96eabeb0a4153ee5e4591b9d67c7e834970a3ef1a825ae2a6693",
        "wc2.1_10m_bio_9.tif": "1c2be92eb77794d1d52a902815da132e9aa1769a4c74cdcda932d03110ebafa2",
        "wc2.1_10m_bio_10.tif": "cf01e8d20c539310225f9d7af1d9e3492898f0a43c3a2ed243d42fbccbe7dc51",
        "wc2.1_10m_bio_11.tif": "def192615646168f2651ea6ab5873ae2f51f56745de1028493eeac7be2f0b5a0",
        "wc2.1_10m_bio_12.tif": "1e823e951ace0186c6eadd7368b4d0385c8f51cc952282c0f2d640bf7790fea5",
        "wc2.1_10m_bio_13.tif": "ff1e4e0d5c20f543dacf27fba2cdd72af65892ab2031371001396a43ae80a5f9",
        "wc2.1_10m_bio_14.tif": "a759ceb007d02574128148af7f47ab578b18a07e2f5624725d7f222c3c457812",
        "wc2.1_10m_bio_15.tif": "6e16bf2e37752932cdeb2b209d1e06ba1a154ac012c372e56bc98e774cdfa6c6",
        "wc2.1_10m_bio_16.tif": "0db333e89dce4057e23610fd3e3aa12d308b36ea14a3fb718fa513281baf1296",
        "wc2.1_10m_bio_17.tif": "fbbbf68af8a2af5d8ec3c43c5a322e2b7f9bfc128f457274d567f08a72d7b86f",
        "wc2.1_10m_bio_18.tif": "4b1487b7b6e7816d94fc932fad0a8b0968aec0a96268976af35be7378ae33c10",
        "wc2.1_10m_bio_19.tif": "8b9d79e73870ba4dbc1e1c8e1af6ef1c8e56653add3ba2bde60ea5806a96013c",
    }
}


def check_resolution(resolution: str) -> str:
    if resolution not in RESOLUTIONS:
        raise InputError(
            f"dataset.resolution = {resolution!r}: expected one of {', '.join(RESOLUTIONS)}"
        )
    return resolution


def archive_name(resolution: str = "10m") -> str:
    """File name of the official archive, e.g. ``wc2.1_10m_bio.zip``."""
    return f"wc2.1_{check_resolution(resolution)}_bio.zip"


def archive_url(resolution: str = "10m") -> str:
    return f"{BASE_URL}/{archive_name(resolution)}"


def layer_names(resolution: str = "10m") -> list[str]:
    """File names of the 19 layers, in BIO1..BIO19 order."""
    check_resolution(resolution)
    return [f"wc2.1_{resolution}_bio_{i}.tif" for i in range(1, N_BIO + 1)]


def _check_sha256(value: str | None) -> str | None:
    if value is None:
        return None
    v = value.lower().removeprefix("sha256:")
    if len(v) != 64 or any(c not in "0123456789abcdef" for c in v):
        raise InputError(f"dataset.sha256 = {value!r}: expected 64 hexadecimal digits")
    return v


class ResumableDownloader:
    """A pooch downloader over HTTP(S) that resumes from ``partial`` with a Range request.

    Bytes go to ``partial`` as they arrive; if the connection drops, the next attempt asks
    the server for the rest (``Range: bytes=<have>-``). A server that ignores Range sends
    the whole file again, which overwrites the partial file. When the transfer completes
    the partial file is moved onto pooch's temporary file, which pooch then checks against
    the known hash. The progress bar (tqdm) is shown only on a terminal.
    """

    def __init__(
        self,
        partial: Path,
        progressbar: bool | None = None,
        timeout: float = 60.0,
        chunk_size: int = 1 << 20,
    ):
        self.partial = Path(partial)
        self.progressbar = sys.stderr.isatty() if progressbar is None else progressbar
        self.timeout = timeout
        self.chunk_size = chunk_size

    def __call__(self, url, output_file, pooch=None, check_only=False):
        import requests
        from tqdm.auto import tqdm

        if check_only:
            r = requests.head(url, allow_redirects=True, timeout=self.timeout)
            return r.status_code == 200
        have = self.partial.stat().st_size if self.partial.exists() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        with requests.get(
            url, headers=headers, stream=True, timeout=self.timeout, allow_redirects=True
        ) as r:
            if not (have and r.status_code == 416):  # 416: the partial file is complete
                r.raise_for_status()
                mode = "ab" if (have and r.status_code == 206) else "wb"
                start = have if mode == "ab" else 0
                length = r.headers.get("content-length")
                total = start + int(length) if length is not None else None
                with (
                    open(self.partial, mode) as fh,
                    tqdm(
                        total=total,
                        initial=start,
                        unit="B",
                        unit_scale=True,
                        unit_divisor=1024,
                        desc=Path(url).name,
                        disable=not self.progressbar,
                        leave=True,
                    ) as bar,
                ):
                    for chunk in r.iter_content(chunk_size=self.chunk_size):
                        fh.write(chunk)
                        bar.update(len(chunk))
        shutil.move(str(self.partial), str(output_file))


def _offline_message(url: str, dest: Path, exc: Exception) -> str:
    return (
        f"cannot download {url} ({type(exc).__name__}: {exc}). Without a network, download "
        f"{Path(url).name} by hand from {url} and put it at {dest} (or pass its path, or "
        "a folder of its 19 GeoTIFFs, as dataset.path / --path)"
    )


def fetch_archive(
    dest_dir: str | os.PathLike,
    resolution: str = "10m",
    url: str | None = None,
    sha256: str | None = None,
    retries: int = 3,
    progressbar: bool | None = None,
    verify: bool = True,
) -> Path:
    """Download the WorldClim archive into ``dest_dir`` (unless present) and verify it.

    Parameters
    ----------
    dest_dir : path
        Folder for the archive; it ends up at ``dest_dir/wc2.1_<res>_bio.zip``.
    resolution : {"10m", "5m", "2.5m", "30s"}
    url : str, optional
        Where to download from; default the official WorldClim server.
    sha256 : str, optional
        Known SHA-256 of the archive. Without it, at 10m each GeoTIFF inside is checked
        against the official file hashes instead.
    retries : int
        Extra attempts after a failed download (network error or hash mismatch).
    verify : bool
        Check the GeoTIFFs inside against the official hashes (where known) and that
        all 19 are present.

    Returns
    -------
    Path of the verified archive. A file that fails verification is removed again.

    Raises
    ------
    InputError
        No network (the message names the file, the URL and where to put the file), a
        checksum mismatch, or a corrupt archive.
    """
    import pooch
    import requests

    check_resolution(resolution)
    sha256 = _check_sha256(sha256)
    if retries < 0:
        raise InputError(f"dataset.retries = {retries}: expected a non-negative integer")
    dest_dir = Path(dest_dir).resolve()
    fname = archive_name(resolution)
    url = url or archive_url(resolution)
    dest = dest_dir / fname
    existed = dest.is_file()
    if existed and sha256 is None:
        # A file already in place: do not fetch; check it like a local archive.
        worldclim_layers(dest, resolution, sha256=None, verify=verify)
        return dest
    dest_dir.mkdir(parents=True, exist_ok=True)
    pup = pooch.create(
        path=dest_dir,
        base_url=url.rsplit("/", 1)[0] + "/",
        registry={fname: f"sha256:{sha256}" if sha256 else None},
        urls={fname: url},
        retry_if_failed=retries,
    )
    downloader = ResumableDownloader(dest_dir / f"{fname}.part", progressbar=progressbar)
    try:
        path = Path(pup.fetch(fname, downloader=downloader))
    except requests.exceptions.RequestException as exc:
        raise InputError(_offline_message(url, dest, exc)) from exc
    except ValueError as exc:  # pooch: hash mismatch
        raise InputError(
            f"checksum mismatch for {fname} downloaded from {url}: {exc}. Expected SHA-256 "
            f"{sha256} (dataset.sha256); the download was discarded"
        ) from exc
    try:
        worldclim_layers(path, resolution, sha256=None, verify=verify)
    except InputError:
        if not existed:  # we downloaded it: a file that fails verification goes again
            path.unlink(missing_ok=True)
        raise
    return path


def unpack_archive(archive: str | os.PathLike, resolution: str = "10m") -> Path:
    """Extract the 19 layers of ``archive`` into the folder ``wc2.1_<res>_bio/`` beside it.

    The folder is built under a temporary name and renamed into place, so it is either
    complete or absent; an existing folder of that name is replaced.

    Returns
    -------
    Path of the folder.
    """
    archive = Path(archive)
    folder = archive.parent / archive_name(resolution).removesuffix(".zip")
    layers = worldclim_layers(archive, resolution, verify=False)
    with atomic_directory(folder) as tmp, open_zip(archive) as zf:
        for lay, name in zip(layers, layer_names(resolution), strict=True):
            member = lay.label.split("!", 1)[1]
            try:
                (tmp / name).write_bytes(zf.read(member))
            except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
                raise InputError(
                    f"zip archive {str(archive)!r}: member {member!r} is corrupt ({exc}); "
                    "expected a complete archive -- delete it and download it again"
                ) from exc
    return folder


def _expected_hash(resolution: str, name: str) -> str | None:
    return LAYER_SHA256.get(resolution, {}).get(name)


def _verify_bytes(label: str, digest: str, expected: str | None) -> None:
    if expected is not None and digest != expected:
        raise InputError(
            f"checksum mismatch for {label}: SHA-256 {digest}, expected {expected} (the "
            "official WorldClim 2.1 file). Delete it and download the archive again"
        )


def worldclim_layers(
    path: str | os.PathLike, resolution: str = "10m", sha256: str | None = None, verify: bool = True
) -> list[LayerSource]:
    """The 19 WorldClim layers from a zip archive or a folder, as BIO1..BIO19.

    ``path`` may be the archive, a folder holding the 19 GeoTIFFs (other files are
    ignored), or a folder holding the archive. With ``verify`` each layer's SHA-256 is
    checked where the official value is known (10m); ``sha256`` checks the archive itself.

    Raises
    ------
    InputError
        Missing path, missing layer (names the file expected and where), checksum mismatch,
        corrupt archive.
    """
    check_resolution(resolution)
    sha256 = _check_sha256(sha256)
    path = Path(path)
    names = layer_names(resolution)
    if path.is_dir():
        present = {p.name: p for p in path.iterdir() if p.is_file()}
        if not any(n in present for n in names) and archive_name(resolution) in present:
            path = present[archive_name(resolution)]
        else:
            missing = [n for n in names if n not in present]
            if missing:
                raise InputError(
                    f"WorldClim folder {str(path)!r} lacks layer(s) {', '.join(missing)}: "
                    f"expected the 19 files {names[0]} .. {names[-1]} of {archive_name(resolution)}"
                )
            layers = []
            for feature, n in zip(FEATURE_NAMES, names, strict=True):
                if verify:
                    _verify_bytes(
                        str(present[n]), file_sha256(present[n]), _expected_hash(resolution, n)
                    )
                lay = _file_layer(present[n])
                layers.append(LayerSource(name=feature, label=lay.label, open=lay.open))
            return layers
    if not path.is_file():
        raise InputError(
            f"dataset.path {str(path)!r} does not exist: expected {archive_name(resolution)} "
            f"(from {archive_url(resolution)}) or a folder of its 19 GeoTIFFs"
        )
    if sha256 is not None:
        digest = file_sha256(path)
        if digest != sha256:
            raise InputError(
                f"checksum mismatch for {str(path)!r}: SHA-256 {digest}, expected {sha256} "
                "(dataset.sha256). Delete it and download the archive again"
            )
    with open_zip(path) as zf:
        members = {Path(m).name: m for m in zf.namelist() if not m.endswith("/")}
        missing = [n for n in names if n not in members]
        if missing:
            raise InputError(
                f"WorldClim archive {str(path)!r} lacks layer(s) {', '.join(missing)}: expected "
                f"the 19 files {names[0]} .. {names[-1]}"
            )
        if verify:
            for n in names:
                expected = _expected_hash(resolution, n)
                if expected is None:
                    continue
                try:
                    digest = hashlib.sha256(zf.read(members[n])).hexdigest()
                except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
                    raise InputError(
                        f"zip archive {str(path)!r}: member {members[n]!r} is corrupt ({exc}); "
                        "expected a complete archive -- delete it and download it again"
                    ) from exc
                _verify_bytes(f"{path}!{members[n]}", digest, expected)
    return [
        zip_layer(path, members[n], name=feature)
        for feature, n in zip(FEATURE_NAMES, names, strict=True)
    ]
