"""What a file's content is, as a digest: the identity under which finished work is kept.

Finished scan points of a chunk job (:mod:`..jobs.chunks`) and finished autoencoder
baselines (:mod:`..jobs.autoencoder_job`) are kept across reruns only if the prepared
dataset they were trained on is the same. "The same" means the same bytes, not the same
modification time: Snakemake reruns ``prepare`` whenever an input's modification time is
newer than its output (a dataset folder copied or restored again, a touched GeoTIFF), and
``prepare`` writes a byte-identical file from the same inputs. Keying on the modification
time would throw away hours of finished training each time that happens; the SHA-256 of
the content (about 0.2 s for WorldClim's 68 MB file) keeps it, and still retrains
everything when a single byte of the data changes.
"""

from __future__ import annotations

import hashlib
import os


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of the file's content, hexadecimal."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def data_identity(path: str | os.PathLike) -> dict:
    """The identity of a dataset file for keeping finished work: its size and content
    digest (not its path or modification time, so a moved or rewritten-but-equal file
    keeps what was trained on it)."""
    return {"size": os.stat(path).st_size, "sha256": file_sha256(path)}
