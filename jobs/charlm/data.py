"""The text corpus: finding it, checking it, its vocabulary, training batches and validation windows.

`data` is a path to a UTF-8 text file or the name `tinyshakespeare`, which is looked up as
`$JOBKIT_DATA/tinyshakespeare.txt`, then in the cache folder (`$JOBKIT_CACHE`, else
`~/.cache/jobkit`), and otherwise downloaded once into the cache with its sha256 checked.
Every problem raises a `DataError` (a `ValueError`; `DataNotFound` is also a `FileNotFoundError`)
whose one-line message names the file and the fix.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

# name -> (file name, URL, sha256)
KNOWN_CORPORA = {
    "tinyshakespeare": (
        "tinyshakespeare.txt",
        "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
        "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
    ),
}


class DataError(ValueError):
    """The corpus cannot be used; the message names the file and says how to fix it."""


class DataNotFound(DataError, FileNotFoundError):
    """The corpus file does not exist (and could not be downloaded)."""


def cache_dir() -> Path:
    """Where downloaded corpora are kept: `$JOBKIT_CACHE`, else `~/.cache/jobkit`."""
    env = os.environ.get("JOBKIT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "jobkit"


def download(url: str, dest: Path, sha256: str, timeout: float = 60.0) -> Path:
    """Fetch `url` into `dest` atomically (temp file in the same folder, fsync, rename).

    The file appears only once complete with the expected sha256; concurrent jobs each write their
    own temp file, and the last rename wins with identical content.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    while chunk := response.read(1 << 16):
                        out.write(chunk)
                        digest.update(chunk)
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                raise DataNotFound(
                    f"{dest.name}: not found locally and the download from {url} failed ({reason}); "
                    f"put the file in $JOBKIT_DATA or {dest.parent}, or pass data=<path to a text file>"
                ) from None
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != sha256:
            raise DataError(f"{url}: downloaded file has sha256 {digest.hexdigest()}, expected {sha256}; "
                            f"nothing was saved — retry, or place a verified copy at {dest}")
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


def find_corpus(data: str) -> Path:
    """The file that `data` names (a known corpus name or a path), downloading a known corpus once."""
    if data in KNOWN_CORPORA:
        filename, url, sha256 = KNOWN_CORPORA[data]
        env = os.environ.get("JOBKIT_DATA")
        candidates = ([Path(env).expanduser() / filename] if env else []) + [cache_dir() / filename]
        for candidate in candidates:
            if candidate.is_file():
                return candidate
        return download(url, cache_dir() / filename, sha256)
    return Path(data).expanduser()


class Vocab:
    """The corpus' distinct characters, sorted by code point; id = position in that order."""

    def __init__(self, chars: str) -> None:
        self.chars = chars
        self._index = {c: i for i, c in enumerate(chars)}
        if len(self._index) != len(chars):
            raise ValueError("vocabulary characters must be distinct")

    def __len__(self) -> int:
        return len(self.chars)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and other.chars == self.chars

    def encode(self, text: str) -> torch.Tensor:
        try:
            return torch.tensor([self._index[c] for c in text], dtype=torch.long)
        except KeyError as exc:
            raise ValueError(f"character {exc.args[0]!r} is not in the run's vocabulary") from None

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        return "".join(self.chars[i] for i in ids)

    def to_json(self) -> str:
        return json.dumps({"chars": self.chars, "size": len(self.chars)}, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> "Vocab":
        return cls(json.loads(text)["chars"])


@dataclass
class Corpus:
    """A checked, encoded text split contiguously: the first part trains, the rest validates."""

    path: Path
    vocab: Vocab
    train: torch.Tensor  # int32 character ids
    val: torch.Tensor

    @property
    def num_chars(self) -> int:
        return len(self.train) + len(self.val)


def read_text(path: Path) -> str:
    if not path.exists():
        raise DataNotFound(f"{path}: no such file; pass data=<path to a UTF-8 text file> or data=tinyshakespeare")
    if not path.is_file():
        raise DataError(f"{path}: not a regular file; pass data=<path to a UTF-8 text file>")
    raw = path.read_bytes()
    if not raw:
        raise DataError(f"{path}: the file is empty; pass a UTF-8 text file with some text in it")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(_not_utf8(path, exc.start, exc.reason)) from None
    return text.replace("\r\n", "\n")  # Windows line endings: one newline, not '\r' + '\n'


def _not_utf8(path: Path, byte: int, reason: str) -> str:
    return (f"{path}: not UTF-8 text (byte {byte}: {reason}); convert it, "
            f"e.g. iconv -f latin1 -t utf-8 {path.name} > {path.stem}.utf8.txt")


HEAD_BYTES = 1 << 16  # how much of the corpus the submit-time check decodes


def check_corpus(data: str, *, val_fraction: float = 0.1, min_split: int = 2) -> Path:
    """The cheap submit-time check of `load_corpus`: the file is there, readable, not empty, its
    first 64 KiB are UTF-8 and it is long enough for both splits. Never downloads; raises DataError."""
    if data in KNOWN_CORPORA:
        filename, url, _ = KNOWN_CORPORA[data]
        env = os.environ.get("JOBKIT_DATA")
        candidates = ([Path(env).expanduser() / filename] if env else []) + [cache_dir() / filename]
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            raise DataNotFound(f"{data}: not found as {' or '.join(map(str, candidates))}; download it once "
                               f"from {url} into $JOBKIT_DATA")
    else:
        path = Path(data).expanduser()
    if not path.exists():
        raise DataNotFound(f"{path}: no such file")
    if not path.is_file():
        raise DataError(f"{path}: not a regular file")
    try:
        with open(path, "rb") as f:
            head = f.read(HEAD_BYTES)
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror})") from None
    if not head:
        raise DataError(f"{path}: the file is empty")
    import codecs
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=len(head) < HEAD_BYTES)
    except UnicodeDecodeError as exc:
        raise DataError(_not_utf8(path, exc.start, exc.reason)) from None
    size = path.stat().st_size  # characters <= bytes: a sound bound on the split sizes
    if size * val_fraction + 1 < min_split or size * (1.0 - val_fraction) < min_split:
        raise DataError(f"{path}: {size} bytes is too short: each split needs at least {min_split} "
                        f"characters (context + 1) with val_fraction={val_fraction}")
    return path


def encode_text(text: str) -> tuple[Vocab, torch.Tensor]:
    """Vocabulary of `text` and its ids (vectorised: code points, then a sorted lookup)."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    alphabet = np.unique(codes)
    ids = np.searchsorted(alphabet, codes).astype(np.int32)
    return Vocab("".join(map(chr, alphabet.tolist()))), torch.from_numpy(ids)


def load_corpus(data: str, *, lowercase: bool = False, val_fraction: float = 0.1,
                min_split: int = 2) -> Corpus:
    """Find, read, check and encode the corpus; both splits get at least `min_split` characters."""
    path = find_corpus(data)
    text = read_text(path)
    if lowercase:
        text = text.lower()
    vocab, ids = encode_text(text)
    n_train = int(len(ids) * (1.0 - val_fraction))
    n_val = len(ids) - n_train
    if min(n_train, n_val) < min_split:
        raise DataError(f"{path}: {len(ids)} characters split into {n_train} for training and {n_val} for "
                        f"validation (val_fraction={val_fraction}), each needs at least {min_split} "
                        f"(context + 1): use a longer text or a smaller context")
    return Corpus(path=path, vocab=vocab, train=ids[:n_train], val=ids[n_train:])


def random_batch(ids: torch.Tensor, batch_size: int, context: int,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """`batch_size` windows at uniformly random starts: inputs (B, T) and next characters (B, T)."""
    starts = torch.randint(0, len(ids) - context, (batch_size,), generator=generator)
    return windows(ids, starts, context)


def val_window_starts(n_val: int, context: int, count: int) -> torch.Tensor:
    """Fixed validation window starts: `count` evenly spaced ones, or (0) every non-overlapping one.

    Depends only on the split's length, the context and `count`, so every model is scored on the
    same characters.
    """
    last = n_val - context - 1
    if last < 0:
        raise ValueError(f"validation text ({n_val} characters) is shorter than context + 1")
    if count == 0:
        return torch.arange(0, last + 1, context)
    return torch.tensor([i * last // max(1, count - 1) for i in range(count)], dtype=torch.long)


def windows(ids: torch.Tensor, starts: torch.Tensor, context: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs `ids[s:s+T]` and targets `ids[s+1:s+T+1]` for each start `s`, as (B, T) int64."""
    chunk = ids[starts[:, None] + torch.arange(context + 1)].long()
    return chunk[:, :-1], chunk[:, 1:]


BLOCK_ENV = "JOBKIT_TEST_BLOCK_READ"  # tests only: "STEP:RANK:FILE" (RANK `*`: every rank)


def blocked_read_hook(rank: int):
    """Fault injection for the stall watchdog's tests, off unless $JOBKIT_TEST_BLOCK_READ is set: the
    batch read of step STEP blocks on RANK for as long as FILE exists (a read from a stalled file
    system). None when off, so a run pays one attribute test per step."""
    value = os.environ.get(BLOCK_ENV)
    if not value:
        return None
    step, who, path = value.split(":", 2)
    if who not in ("*", str(rank)):
        return None

    def blocking_read(at: int) -> None:
        import time

        while at == int(step) and os.path.exists(path):
            time.sleep(0.2)
    return blocking_read
