"""What messages cost (P9), pure: the price of a delivered template by the recipient's
country and the category WhatsApp applied, under per-message pricing — non-template
messages, and utility templates inside an open window, are free; entry-point windows too.
"""

from __future__ import annotations

from collections.abc import Mapping

from tidings.workspaces.domain import WorkspacePolicy

FREE_TYPES = frozenset({"free_customer_service", "free_entry_point"})
CATEGORY_ALIASES = {"authentication-international": "authentication", "marketing_lite": "marketing"}


def unit_price(policy: WorkspacePolicy, country: str | None, category: str) -> float:
    """The rate card's price for one delivered template of ``category`` to ``country``."""
    category = CATEGORY_ALIASES.get(category, category)
    prices = policy.message_prices
    row: Mapping[str, float] = prices.get((country or "").upper(), prices["*"])
    if category in row:
        return float(row[category])
    return float(prices["*"].get(category, 0.0))


def charge(
    policy: WorkspacePolicy, *, country: str | None, pricing_type: str | None, category: str | None
) -> float:
    """What a delivered message costs, from the pricing WhatsApp reported with its status."""
    if category is None or category == "service" or pricing_type in FREE_TYPES:
        return 0.0
    return unit_price(policy, country, category)


def estimate(
    policy: WorkspacePolicy, recipients_by_country: Mapping[str | None, int], category: str
) -> float:
    """The cost of sending one template of ``category`` to every recipient, if delivered."""
    return round(
        sum(
            unit_price(policy, country, category) * n
            for country, n in recipients_by_country.items()
        ),
        6,
    )
