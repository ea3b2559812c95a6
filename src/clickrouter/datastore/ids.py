"""Which campaign ids can name a partition directory (no heavy imports: the
decode worker checks every click with it)."""

from __future__ import annotations

import re

SAFE_ID = re.compile(r"[A-Za-z0-9_.-]{1,200}")


def is_safe_campaign_id(campaign_id: str) -> bool:
    """Whether ``campaign_id`` can name a partition directory as it is."""
    return bool(SAFE_ID.fullmatch(campaign_id)) and campaign_id not in (".", "..")
