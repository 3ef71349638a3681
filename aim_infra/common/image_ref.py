"""Container image references split once, the way Docker splits them: registry host, repository path, tag, digest.

Standard library only: host programs and the stack import it. It splits, it does not validate: each caller checks
the parts against the grammar it needs (the settings' IMAGE_REF, image_cleanup's reference grammar).

The rules (no normalisation: a Docker Hub name is not rewritten to docker.io/library/...):
- a digest is what follows the first `@`;
- a tag is what follows the last `:` of the last path component (a `:` before a `/` is a registry's port);
- the first path component is a registry host when more components follow and it holds a `.` or a `:` or is
  `localhost`; otherwise the name is a Docker Hub one (`aim-engine`, `org/aim-engine`) and has no registry here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ImageRef:
    """One image reference in parts; `str()` gives the reference back exactly as it was parsed."""

    registry: str | None  # localhost:5000, registry.example.com; None for a Docker Hub name
    path: str  # the repository inside its registry: aim-engine, team/aim-engine
    tag: str | None = None  # None without a `:`; "" for a trailing `:` (which no grammar admits)
    digest: str | None = None  # sha256:<64 hex>; None without an `@`

    @classmethod
    def parse(cls, text: str) -> ImageRef:
        """Split `text`; never raises (an empty or odd reference gives empty or odd parts)."""
        name, at, digest = text.partition("@")
        head, slash, last = name.rpartition("/")
        tag: str | None = None
        if ":" in last:
            last, _, tag = last.rpartition(":")
        first, more, rest = f"{head}{slash}{last}".partition("/")
        if more and ("." in first or ":" in first or first == "localhost"):
            return cls(registry=first, path=rest, tag=tag, digest=digest if at else None)
        return cls(registry=None, path=f"{head}{slash}{last}", tag=tag, digest=digest if at else None)

    @property
    def repository(self) -> str:
        """Everything before the tag and digest: `localhost:5000/aim-engine`, `org/aim-engine`."""
        return f"{self.registry}/{self.path}" if self.registry is not None else self.path

    def __str__(self) -> str:
        tag = f":{self.tag}" if self.tag is not None else ""
        digest = f"@{self.digest}" if self.digest is not None else ""
        return f"{self.repository}{tag}{digest}"
