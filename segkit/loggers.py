"""Weights & Biases logging that works without an account or a network: runs fall back to offline mode.

The configs log to W&B by default through :class:`WandbLogger` (Lightning's, plus the fallback). A run is
written offline, to ``<save_dir>/wandb/offline-run-*``, when ``WANDB_MODE`` says so, when no API key is set
up (``WANDB_API_KEY`` or ``wandb login``), or when the W&B server cannot be reached; segkit then prints once
how to upload it later with ``wandb sync``.
"""
from __future__ import annotations

import netrc
import os
import socket
from urllib.parse import urlparse

from lightning.pytorch.loggers import WandbLogger as _LightningWandbLogger
from lightning.pytorch.utilities import rank_zero_info

DEFAULT_BASE_URL = "https://api.wandb.ai"


def offline_reason(timeout: float = 3.0) -> str | None:
    """Why a W&B run has to be offline here (``None``: it can go online)."""
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in ("offline", "dryrun", "disabled"):
        return f"WANDB_MODE={mode}"
    url = urlparse(os.environ.get("WANDB_BASE_URL", DEFAULT_BASE_URL))
    host = url.hostname or "api.wandb.ai"
    if not os.environ.get("WANDB_API_KEY"):
        try:
            has_key = netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
        except (FileNotFoundError, netrc.NetrcParseError):
            has_key = False
        if not has_key:
            return "no W&B API key (set WANDB_API_KEY or run `wandb login`)"
    try:
        socket.create_connection((host, url.port or (443 if url.scheme != "http" else 80)), timeout=timeout).close()
    except OSError:
        return f"{host} cannot be reached"
    return None


def sync_hint(run_dir: str) -> str:
    return f"W&B run written offline to {run_dir}; upload it with:  wandb sync {run_dir}"


class WandbLogger(_LightningWandbLogger):
    """Lightning's ``WandbLogger`` that writes the run offline when W&B cannot be used online (see module doc).

    Args:
        project: W&B project.
        name: run name (W&B picks one when None).
        tags: run tags.
        save_dir: folder under which W&B writes ``wandb/`` (and Lightning the run's checkpoints).
        log_model: upload checkpoints as W&B model artifacts (``True``: at the end, ``"all"``: as they are
            written), with their score in the metadata. Offline, they are uploaded by ``wandb sync``.
        offline: force offline mode; default: decide as described above.
        **kwargs: passed to Lightning's ``WandbLogger`` and ``wandb.init``.
    """

    def __init__(self, project: str = "segkit", name: str | None = None, tags: list[str] | None = None,
                 save_dir: str = ".", log_model: bool | str = False, offline: bool | None = None, **kwargs) -> None:
        reason = offline_reason() if offline is None else ("offline=True" if offline else None)
        if reason is not None and os.environ.get("WANDB_MODE", "").lower() != "disabled":
            kwargs["mode"] = "offline"  # wandb's own switch: unlike Lightning's `offline`, it allows log_model
            rank_zero_info(f"segkit: W&B offline ({reason}); the run will be written under {save_dir}/wandb")
        super().__init__(project=project, name=name, tags=tags, save_dir=save_dir, log_model=log_model, **kwargs)
        self.offline_reason = reason

    def sync_hint(self) -> str | None:
        """How to upload the run, when it was written offline."""
        if self.offline_reason is None or self._experiment is None or not getattr(self._experiment, "dir", None):
            return None
        return sync_hint(os.path.dirname(os.path.normpath(self._experiment.dir)))
