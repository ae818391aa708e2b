"""Where a release goes: a local registry folder or the Hugging Face Hub.

Apart from `registry` (the protocol and the local registry) so that `hub`, which needs the
protocol's constants, and `registry` do not import each other.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from qmd_ft.publish.registry import LocalRegistry, Registry

if TYPE_CHECKING:
    from qmd_ft.config import PublishConfig


def open_registry(publish: PublishConfig, local: Path | None = None) -> Registry:
    """Where a release goes: `local` (--registry), else `publish.registry`, else the Hub.

    On the Hub, new repos are created private when `publish.private` is set.
    """
    root = local or (Path(publish.registry) if publish.registry else None)
    if root is not None:
        return LocalRegistry(root)
    from qmd_ft.publish.hub import HubRegistry

    return HubRegistry(private=publish.private)
