"""Products named in customers' messages, and the wish to buy them (X1: "I want to buy product
A" reaches the CRM with the SKU). Pure: the catalogue comes in, detections go out.

A product is found when the message contains its name or one of its aliases as whole words in
any of the three languages ("iPhone15 Pro Max" is found in "iphone 15 pro max", "ตา" is not
found in "ตาก"). A purchase is a product plus a buying phrase, unless the message is about
something else the intents recognise (an order's status, a complaint, an opt-out).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

from tidings.automation.language import KeywordGroupTerms, KeywordIndex

# Phrases that say "I want to buy" in the three languages, as customers write them in chat
# ("CF" is how Thai live-commerce buyers confirm an order).
BUYING_TERMS = (
    "buy",
    "purchase",
    "i'll take",
    "i will take",
    "want to order",
    "like to order",
    "place an order",
    "add to cart",
    "i want one",
    "i want two",
    "อยากซื้อ",
    "ซื้อ",
    "อยากได้",
    "สั่งซื้อ",
    "ขอสั่ง",
    "จะเอา",
    "เอาค่ะ",
    "เอาครับ",
    "cf",
    "รับค่ะ",
    "我要买",
    "购买",
    "想买",
    "买",
    "下单",
    "订购",
    "我要",
    "要一个",
    "拍下",
)
NOT_A_PURCHASE = frozenset({"order_status", "complaint", "opt_out", "human_handoff"})


@cache
def _buying() -> KeywordIndex:
    return KeywordIndex.of([KeywordGroupTerms("buy", BUYING_TERMS)])


@dataclass(frozen=True)
class CatalogueEntry:
    sku: str
    name: str
    aliases: tuple[str, ...]


@dataclass(frozen=True)
class Catalogue:
    index: KeywordIndex
    names: dict[str, str]  # sku → name

    @classmethod
    def of(cls, entries: Iterable[CatalogueEntry]) -> Catalogue:
        listed = list(entries)
        return cls(
            KeywordIndex.of(KeywordGroupTerms(e.sku, (e.name, *e.aliases)) for e in listed),
            {e.sku: e.name for e in listed},
        )

    def mentioned(self, text: str | None) -> list[str]:
        """The SKUs the text names, in catalogue order."""
        return self.index.found_in(text) if self.names else []


def wants_to_buy(text: str | None, intent: str | None) -> bool:
    """Whether the message says the customer wants to buy (given a product was named)."""
    return intent not in NOT_A_PURCHASE and bool(_buying().found_in(text))
