"""The videos a server can ground: files of its ``--videos`` folder (picked by name only) and uploads
(stored under server-made names in a temporary folder the server created and deletes on exit).

Every video is checked before any work is queued and before it is served: a known video extension, a file
PyAV can open with a video stream, and a duration (from the container) within the server's limit. A
``--videos`` entry is served only when it resolves to a file inside the folder (a symlink out of it never is).
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
import threading
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from masra.video.frames import VIDEO_EXTENSIONS, VideoDecodeError, probe_video
from masra.web.errors import RequestError


@dataclass(frozen=True)
class Video:
    ref: str  # how the page names it: "library/NAME" or "upload/ID"
    name: str  # what the page shows (the file name, or the uploaded file's name)
    path: Path  # the file itself (a --videos symlink resolved)
    duration: float  # seconds, from the container

    def as_dict(self) -> dict:
        kind, _, key = self.ref.partition("/")
        return {"ref": self.ref, "name": self.name, "duration": self.duration,
                "url": f"/media/{kind}/{quote(key, safe='')}"}


def check_video(path: Path, name: str, max_duration: float) -> float:
    """The video's duration in seconds, or a RequestError (400) saying why it cannot be used."""
    if Path(name).suffix.lower() not in VIDEO_EXTENSIONS:
        raise RequestError(400, f"{name} is not a video file: masra reads {', '.join(VIDEO_EXTENSIONS)} files")
    try:
        info = probe_video(path)
    except VideoDecodeError as err:  # named as the person knows the file, never by its server path
        reason = str(err).replace(str(path), name).replace(path.name, name)
        raise RequestError(400, f"{name} is not a video masra can read ({reason})") from None
    if info.duration is None or info.duration <= 0:
        raise RequestError(400, f"{name}: the file does not say how long the video is, so it cannot be checked "
                                f"against this server's {max_duration:g} s limit")
    if info.duration > max_duration:
        raise RequestError(400, f"{name} is {info.duration:.1f} s long; this server takes videos of at most "
                                f"{max_duration:g} s (masra serve --max-duration)")
    return info.duration


class VideoLibrary:
    """The video files directly inside the ``--videos`` folder. A request names a file; only names that
    appear in the folder's listing are accepted, so no path from a request ever reaches the file system."""

    def __init__(self, folder: Path | None, max_duration: float) -> None:
        self.folder = folder
        self.max_duration = max_duration
        # name → ((file, mtime_ns, size), Video or RequestError): a file is probed again only when it changes
        self._checked: dict[str, tuple[tuple[Path, int, int], Video | RequestError]] = {}

    def names(self) -> list[str]:
        if self.folder is None:
            return []
        return sorted(p.name for p in self.folder.iterdir()
                      if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)

    def listing(self) -> list[dict]:
        """Name and duration of every video; ``problem`` says why one cannot be used (too long, unreadable)."""
        entries = []
        for name in self.names():
            try:
                entries.append(self.get(name).as_dict() | {"problem": None})
            except RequestError as err:
                entries.append({"ref": f"library/{name}", "name": name, "duration": None, "url": None,
                                "problem": err.message})
        return entries

    def get(self, name: str) -> Video:
        """The checked video ``name``; a RequestError when it is not listed, links out of the folder, or
        fails the video check."""
        if name not in self.names():
            raise RequestError(404, f"the server's video folder has no video named {name!r}")
        folder = self.folder.resolve()  # type: ignore[union-attr]  # names() is empty without a folder
        path = (folder / name).resolve()
        if not path.is_relative_to(folder):
            raise RequestError(403, f"{name} links outside the server's video folder; it is not served")
        stat = path.stat()
        key = (path, stat.st_mtime_ns, stat.st_size)
        cached = self._checked.get(name)
        if cached is None or cached[0] != key:
            try:
                outcome: Video | RequestError = Video(f"library/{name}", name, path,
                                                      check_video(path, name, self.max_duration))
            except RequestError as err:
                outcome = err
            self._checked[name] = cached = (key, outcome)
        if isinstance(cached[1], RequestError):
            raise cached[1]
        return cached[1]


class UploadStore:
    """Uploaded videos in a private temporary folder. At most ``max_receiving`` uploads are received at once
    (more are refused with 429), and ``max_files`` are kept: the oldest is deleted first, except while a job
    holds it (``acquire`` / ``release``), so a queued job never loses its video."""

    def __init__(self, max_bytes: int, max_files: int, max_duration: float, max_receiving: int = 4) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="masra-serve-"))
        self.max_bytes = max_bytes
        self.max_files = max_files
        self.max_duration = max_duration
        self.max_receiving = max_receiving
        self._videos: OrderedDict[str, Video] = OrderedDict()
        self._holds: Counter[str] = Counter()  # upload id → jobs that still need it
        self._receiving = 0
        self._lock = threading.Lock()

    async def save(self, name: str, chunks: AsyncIterator[bytes], declared_size: int | None) -> Video:
        """Stream an upload to disk, refusing it as soon as it passes the size limit, then check it."""
        if declared_size is not None and declared_size > self.max_bytes:
            raise RequestError(413, self._too_big(name))
        suffix = Path(name).suffix.lower()
        if suffix not in VIDEO_EXTENSIONS:
            raise RequestError(400, f"{name} is not a video file: masra reads {', '.join(VIDEO_EXTENSIONS)} files")
        with self._lock:
            if self._receiving >= self.max_receiving:
                plural = "upload" if self.max_receiving == 1 else "uploads"
                raise RequestError(429, f"the server is receiving {self._receiving} {plural} already, its limit; "
                                        "try again in a moment (masra serve --max-concurrent-uploads)")
            self._receiving += 1
        try:
            upload_id = secrets.token_hex(8)
            video = await self._receive(upload_id, name, self.folder / f"{upload_id}{suffix}", chunks)
        finally:
            with self._lock:
                self._receiving -= 1
        with self._lock:
            self._videos[upload_id] = video
            self._evict()
        return video

    def get(self, upload_id: str) -> Video:
        with self._lock:
            return self._kept(upload_id)

    def acquire(self, upload_id: str) -> Video:
        """The upload, kept on disk until as many ``release`` calls as ``acquire`` calls."""
        with self._lock:
            video = self._kept(upload_id)
            self._holds[upload_id] += 1
        return video

    def release(self, upload_id: str) -> None:
        with self._lock:
            self._holds[upload_id] -= 1
            if self._holds[upload_id] <= 0:
                del self._holds[upload_id]
            self._evict()

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    async def _receive(self, upload_id: str, name: str, path: Path, chunks: AsyncIterator[bytes]) -> Video:
        partial = path.with_name(path.name + ".part")
        size = 0
        try:
            with partial.open("wb") as out:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise RequestError(413, self._too_big(name))
                    out.write(chunk)
            if size == 0:
                raise RequestError(400, f"{name} is empty")
            partial.replace(path)
            return Video(f"upload/{upload_id}", name, path, check_video(path, name, self.max_duration))
        except BaseException:
            partial.unlink(missing_ok=True)
            path.unlink(missing_ok=True)
            raise

    def _kept(self, upload_id: str) -> Video:
        video = self._videos.get(upload_id)
        if video is None:
            raise RequestError(404, "no such upload (the server keeps only its latest uploads; upload it again)")
        return video

    def _evict(self) -> None:
        """Delete the oldest uploads no job holds while more than ``max_files`` are kept (lock held); never
        the newest, which its uploader is about to use."""
        free = [upload_id for upload_id in list(self._videos)[:-1] if upload_id not in self._holds]  # oldest first
        for upload_id in free[:max(0, len(self._videos) - self.max_files)]:
            self._videos.pop(upload_id).path.unlink(missing_ok=True)

    def _too_big(self, name: str) -> str:
        return f"{name} is larger than this server's upload limit of {self.max_bytes / 2**20:g} MB"
