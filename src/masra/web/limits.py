"""What a ``masra serve`` server accepts: set from the command line, shown on the page."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from masra.errors import MasraError


@dataclass(frozen=True)
class ServeLimits:
    max_duration: float = 600.0  # seconds of video; longer uploads and --videos files are refused
    max_upload_bytes: int = 500 * 2**20  # an upload is cut off (and refused) past this size
    max_query_chars: int = 300  # longer queries are refused (the model reads at most max_q_l tokens anyway)
    max_uploads: int = 20  # uploads kept on disk; the oldest no queued or running job needs is deleted first
    max_concurrent_uploads: int = 4  # uploads received at once; more are refused (429)
    max_queued_jobs: int = 20  # queries waiting behind the running one; more are refused (429)
    top_k: int = 10  # moments returned per query

    def __post_init__(self) -> None:
        checks = {
            "--max-duration": self.max_duration > 0,
            "--max-upload-mb": self.max_upload_bytes > 0,
            "--max-query-chars": self.max_query_chars > 0,
            "--max-uploads": self.max_uploads > 0,
            "--max-concurrent-uploads": self.max_concurrent_uploads > 0,
            "--max-queued-jobs": self.max_queued_jobs > 0,
            "--top-k": self.top_k > 0,
        }
        for flag, ok in checks.items():
            if not ok:
                raise MasraError("must be > 0", field=flag)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
