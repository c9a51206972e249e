"""Weight registry: name -> file, pinned URL and sha256; lookup, cache and verified download.

Lookup order for a frozen file: ``$VAEEDOF_WEIGHTS_DIR``, then the user cache
(``platformdirs.user_cache_dir("napari-vaeedof")/weights``, or ``$VAEEDOF_CACHE_DIR``), then a
download into the cache (to a temporary file, verified, then moved into place). The download
comes from the pinned URL, or from ``$VAEEDOF_WEIGHTS_URL`` (a mirror holding the same files).
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import platformdirs

TAESD_COMMIT = "5cccb12dc72074a4be35680c3b108548a7c69978"
BASE_URL = f"https://github.com/madebyollin/taesd/raw/{TAESD_COMMIT}/"


class WeightsError(RuntimeError):
    """Weights are missing, corrupt or cannot be fetched; the message says what to do."""


@dataclass(frozen=True)
class WeightFile:
    filename: str
    sha256: str
    size: int
    url: str


REGISTRY: dict[str, WeightFile] = {
    "taef2_encoder": WeightFile(
        "taef2_encoder.pth",
        "10a4e1021e89d7551eaf161352da8dbd0b1aa83872ae28b150c1df1ce2f147b6",
        2704692,
        BASE_URL + "taef2_encoder.pth",
    ),
    "taef2_decoder": WeightFile(
        "taef2_decoder.pth",
        "0a44a31e1ae59eb9dbf9359d24942fd3ef5928162c1800d97a28c61d51be0ab5",
        2704756,
        BASE_URL + "taef2_decoder.pth",
    ),
}

#: Our own Fusion U-Net weights ship inside the package.
PACKAGED_DIR = Path(__file__).parent / "weights"
FUSION_UNET_FILE = PACKAGED_DIR / "fusion_unet.safetensors"
SELECTION_NET_FILE = PACKAGED_DIR / "selection_net.safetensors"


def cache_dir() -> Path:
    """Folder where downloaded weights are kept."""
    env = os.environ.get("VAEEDOF_CACHE_DIR")
    base = Path(env) if env else Path(platformdirs.user_cache_dir("napari-vaeedof"))
    return base / "weights"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _state(path: Path, entry: WeightFile) -> str:
    """"ok", "not there", or why the file at ``path`` is not ``entry``."""
    if not path.is_file():
        return "not there"
    if path.stat().st_size != entry.size:
        return f"wrong file ({path.stat().st_size} bytes, expected {entry.size})"
    if sha256_of(path) != entry.sha256:
        return "wrong file (sha256 differs from the pinned one)"
    return "ok"


def _missing_message(entry: WeightFile, reason: str) -> str:
    files = ", ".join(e.filename for e in REGISTRY.values())
    return (
        f"{reason}. Download {files} from {BASE_URL} and put them in {cache_dir()} "
        f"(or in any folder and set VAEEDOF_WEIGHTS_DIR to it)."
    )


def download(entry: WeightFile, dest: Path, *, url: str | None = None, progress: bool = True,
             timeout: float = 60.0) -> Path:
    """Fetch ``url`` (default: the pinned one) to a temp file beside ``dest``, verify, move."""
    mirror = os.environ.get("VAEEDOF_WEIGHTS_URL")
    url = url or (mirror.rstrip("/") + "/" + entry.filename if mirror else entry.url)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{entry.filename}.", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            total = int(resp.headers.get("Content-Length") or entry.size)
            from tqdm.auto import tqdm

            with tqdm(total=total, unit="B", unit_scale=True, desc=entry.filename,
                      disable=not progress) as bar:
                for chunk in iter(lambda: resp.read(1 << 16), b""):
                    out.write(chunk)
                    bar.update(len(chunk))
        size = tmp.stat().st_size
        if size != entry.size:
            raise WeightsError(
                f"Download of {entry.filename} from {url} is truncated or wrong "
                f"({size} bytes, expected {entry.size}); nothing was saved. Try again."
            )
        digest = sha256_of(tmp)
        if digest != entry.sha256:
            raise WeightsError(
                f"Download of {entry.filename} from {url} has sha256 {digest}, expected "
                f"{entry.sha256}; refused, nothing was saved."
            )
        os.replace(tmp, dest)
        return dest
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise WeightsError(_missing_message(entry, f"Could not download {url} ({exc})")) from exc
    finally:
        tmp.unlink(missing_ok=True)


def lookup(name: str) -> list[tuple[Path, str]]:
    """Where `weight_path` looks for a registry file, in order, and what is there: "ok",
    "not there", or why the file there is refused. Never downloads."""
    entry = REGISTRY[name]
    env = os.environ.get("VAEEDOF_WEIGHTS_DIR")
    places = [Path(env).expanduser() / entry.filename] if env else []
    places.append(cache_dir() / entry.filename)
    return [(path, _state(path, entry)) for path in places]


def weight_path(name: str, *, allow_download: bool = True) -> Path:
    """Local path of a verified registry file, downloading it into the cache if needed."""
    entry = REGISTRY[name]
    *chosen, (cached, cached_state) = lookup(name)
    for candidate, state in chosen:  # VAEEDOF_WEIGHTS_DIR: a wrong file there is an error
        if state == "ok":
            return candidate
        if state != "not there":
            raise WeightsError(
                f"{candidate} does not match the pinned sha256 {entry.sha256} "
                f"(size {entry.size}); replace it with the file from {entry.url}."
            )
    if cached_state == "ok":
        return cached
    if not allow_download:
        raise WeightsError(_missing_message(entry, f"{entry.filename} is not available offline"))
    return download(entry, cached)


#: sha256 of the packaged files: checked before loading, so a damaged install says so instead
#: of fusing with broken weights. Shipping new weights means updating these (a test checks).
PACKAGED_SHA256 = {
    "fusion_unet": "a43f826ac0261298bc28c766ec796a4c04e6fcd0f8455bb46547a3c8eb0c8529",
    "selection_net": "593db21789201a87251d3fe30f4166f2bdc62339b27d4c8dd0bf101656afbbe5",
}


@functools.lru_cache(maxsize=8)
def _sha256_cached(path: Path, size: int, mtime_ns: int) -> str:
    return sha256_of(path)


def _verified(path: Path, name: str, what: str, remedy: str) -> Path:
    if not path.is_file():
        raise WeightsError(f"The packaged {what} weights are missing ({path}); {remedy}")
    st = path.stat()  # hashed once per file version, not on every fusion call
    if _sha256_cached(path, st.st_size, st.st_mtime_ns) != PACKAGED_SHA256[name]:
        raise WeightsError(f"The packaged {what} weights are damaged ({path}: sha256 differs "
                           f"from the release's); {remedy}")
    return path


def fusion_unet_path() -> Path:
    """The packaged Fusion U-Net weights (safetensors), verified against their sha256."""
    return _verified(FUSION_UNET_FILE, "fusion_unet", "Fusion U-Net",
                     "reinstall napari-vaeedof or train them with `napari-vaeedof train`.")


def selection_net_path() -> Path:
    """The packaged selection head weights (safetensors), used by the pixel-faithful mode,
    verified against their sha256."""
    return _verified(SELECTION_NET_FILE, "selection_net", "selection head",
                     "reinstall napari-vaeedof, train them with `napari-vaeedof train --config "
                     "selection`, or use mode='latent'.")
