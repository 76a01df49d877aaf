"""Automatic answers to the two questions customers ask most (A5): where is my order, and
where is your nearest store — in the contact's language (Thai, Chinese, English). Pure."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

ORDER_EVENTS = frozenset(
    {
        "order.placed",
        "order.paid",
        "order.updated",
        "order.shipped",
        "order.delivered",
        "order.cancelled",
    }
)
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def language_of(locale: str | None) -> str:
    """``th``, ``zh-Hant``, ``zh-Hans`` or ``en`` for a contact's (or workspace's) locale."""
    code = (locale or "").replace("_", "-").lower()
    if code.startswith("th"):
        return "th"
    if code.startswith("zh"):
        traditional = any(part in code for part in ("hant", "-tw", "-hk", "-mo"))
        return "zh-Hant" if traditional else "zh-Hans"
    return "en"


def language_for(text: str | None, locale: str | None) -> str:
    """Answer in the language the customer wrote in (Thai or Chinese script), else in their
    locale's; Chinese takes the locale's script, Traditional when the locale does not say."""
    written = text or ""
    if any("\u0e00" <= ch <= "\u0e7f" for ch in written):
        return "th"
    if any("\u4e00" <= ch <= "\u9fff" for ch in written):
        known = language_of(locale)
        return known if known.startswith("zh") else "zh-Hant"
    if written.strip() and any(ch.isascii() and ch.isalpha() for ch in written):
        return "en"
    return language_of(locale)


def text_in(language: str, text: str, translations: Mapping[str, str]) -> str:
    """A reply's text in the customer's ``language`` (as :func:`language_for` gives it): its
    translation for that language (``zh-Hant``), else for the base language (``zh``), else
    the reply's own text."""
    if not translations:
        return text
    by_tag = {tag.lower(): words for tag, words in translations.items()}
    for tag in (language.lower(), language.split("-")[0].lower()):
        if tag in by_tag:
            return by_tag[tag]
    return text


# Where the customer's number is from tells their language when their words do not (a
# location, a sticker, an emoji): a Thai number is answered in Thai, not in the shop's language.
COUNTRY_LOCALES = {
    "TH": "th-TH",
    "TW": "zh-Hant-TW",
    "HK": "zh-Hant-HK",
    "MO": "zh-Hant-MO",
    "CN": "zh-Hans-CN",
    "SG": "zh-Hans-SG",
}


def locale_of_country(country: str | None) -> str | None:
    return COUNTRY_LOCALES.get((country or "").upper())


# --- orders -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderState:
    order_id: str | None
    status: str
    carrier: str | None
    tracking_url: str | None
    at: datetime
    tracking_number: str | None = None


def latest_order(events: Sequence[Any]) -> OrderState | None:
    """The newest order's state from its timeline events (``order.*`` with ``order_id``,
    ``status``, ``carrier``, ``tracking_url``, ``tracking_number``); later events of the same
    order fill in what earlier ones said."""
    relevant = sorted((e for e in events if e.type in ORDER_EVENTS), key=lambda e: e.occurred_at)
    if not relevant:
        return None
    newest = relevant[-1]
    order_id = newest.properties.get("order_id")
    known: dict[str, Any] = {}
    for event in relevant:
        if order_id is None or event.properties.get("order_id") == order_id:
            known.update({k: v for k, v in event.properties.items() if v not in (None, "")})
            if "status" not in event.properties:
                known["status"] = event.type.removeprefix("order.")
    return OrderState(
        order_id=str(order_id) if order_id is not None else None,
        status=str(known.get("status", newest.type.removeprefix("order."))),
        carrier=_text(known.get("carrier")),
        tracking_url=_text(known.get("tracking_url")),
        at=newest.occurred_at,
        tracking_number=_text(known.get("tracking_number")),
    )


def _text(value: Any) -> str | None:
    return str(value) if isinstance(value, str | int) and str(value).strip() else None


STATUS_WORDS = {
    "en": {
        "placed": "received",
        "paid": "paid and being prepared",
        "packed": "packed",
        "shipped": "on its way",
        "out_for_delivery": "out for delivery today",
        "delivered": "delivered",
        "cancelled": "cancelled",
    },
    "th": {
        "placed": "ได้รับแล้ว",
        "paid": "ชำระเงินแล้ว กำลังเตรียมจัดส่ง",
        "packed": "แพ็กแล้ว",
        "shipped": "จัดส่งแล้ว กำลังเดินทาง",
        "out_for_delivery": "กำลังนำส่งวันนี้",
        "delivered": "จัดส่งถึงแล้ว",
        "cancelled": "ถูกยกเลิก",
    },
    "zh-Hant": {
        "placed": "已收到",
        "paid": "已付款，備貨中",
        "packed": "已包裝",
        "shipped": "已出貨，運送中",
        "out_for_delivery": "今天派送中",
        "delivered": "已送達",
        "cancelled": "已取消",
    },
    "zh-Hans": {
        "placed": "已收到",
        "paid": "已付款，备货中",
        "packed": "已包装",
        "shipped": "已发货，运输中",
        "out_for_delivery": "今天派送中",
        "delivered": "已送达",
        "cancelled": "已取消",
    },
}


def order_answer(order: OrderState | None, language: str) -> str:
    """The reply to "where is my parcel?"."""
    if order is None:
        return {
            "en": "We could not find an order for this number yet. An agent will check "
            "and get back to you.",
            "th": "ยังไม่พบคำสั่งซื้อของเบอร์นี้ค่ะ เดี๋ยวเจ้าหน้าที่จะตรวจสอบและติดต่อกลับนะคะ",
            "zh-Hant": "目前找不到這個號碼的訂單，客服會查詢後回覆您。",
            "zh-Hans": "目前找不到这个号码的订单，客服会查询后回复您。",
        }[language]
    status = STATUS_WORDS[language].get(order.status, order.status)
    number = f" {order.order_id}" if order.order_id else ""
    parts = {
        "en": [f"Your order{number} is {status}."],
        "th": [f"คำสั่งซื้อ{number} ของคุณ{status}ค่ะ"],
        "zh-Hant": [f"您的訂單{number}{status}。"],
        "zh-Hans": [f"您的订单{number}{status}。"],
    }[language]
    if order.carrier:
        parts.append(
            {
                "en": f"Carrier: {order.carrier}.",
                "th": f"ขนส่ง: {order.carrier}",
                "zh-Hant": f"物流：{order.carrier}。",
                "zh-Hans": f"物流：{order.carrier}。",
            }[language]
        )
    if order.tracking_url:
        parts.append(
            {
                "en": f"Track it here: {order.tracking_url}",
                "th": f"ติดตามพัสดุได้ที่ {order.tracking_url}",
                "zh-Hant": f"追蹤連結：{order.tracking_url}",
                "zh-Hans": f"追踪链接：{order.tracking_url}",
            }[language]
        )
    elif order.tracking_number:  # no link: the number to look up with the carrier
        parts.append(
            {
                "en": f"Tracking number: {order.tracking_number}.",
                "th": f"เลขพัสดุ: {order.tracking_number}",
                "zh-Hant": f"追蹤編號：{order.tracking_number}。",
                "zh-Hans": f"追踪单号：{order.tracking_number}。",
            }[language]
        )
    return " ".join(parts)


# --- stores -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoreInfo:
    name: str
    address: str
    latitude: float
    longitude: float
    hours: Mapping[str, str]
    phone: str | None = None
    map_url: str | None = None


def distance_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance (haversine) on a sphere of the Earth's mean radius."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * 6371.0088 * math.asin(math.sqrt(h))


def nearest(stores: Sequence[StoreInfo], at: tuple[float, float]) -> tuple[StoreInfo, float] | None:
    if not stores:
        return None
    best = min(stores, key=lambda s: distance_km(at, (s.latitude, s.longitude)))
    return best, distance_km(at, (best.latitude, best.longitude))


def check_hours(hours: Any) -> dict[str, str]:
    """``{"mon": "10:00-21:00", …}``; a day left out is closed.

    Raises:
        ValueError: naming the day at fault.
    """
    if not isinstance(hours, Mapping):
        raise ValueError("hours map days (mon … sun) to opening times such as 10:00-21:00")
    cleaned = {}
    for day, span in hours.items():
        if day not in DAYS:
            raise ValueError(f"{day!r} is not a day: use {', '.join(DAYS)}")
        if not isinstance(span, str) or not _span(span):
            raise ValueError(f"{day}: opening times such as 10:00-21:00")
        cleaned[day] = span.replace(" ", "")
    return cleaned


def _span(text: str) -> bool:
    try:
        opens, closes = text.replace(" ", "").split("-")
        return all(
            0 <= int(h) <= 24 and 0 <= int(m) < 60 for h, m in (opens.split(":"), closes.split(":"))
        )
    except ValueError:
        return False


def store_answer(
    found: tuple[StoreInfo, float] | None,
    all_stores: Sequence[StoreInfo],
    language: str,
    local_now: datetime,
) -> str:
    """The reply to "where is your store?": the nearest one with today's hours when we know
    where the customer is, otherwise our stores and a request to share a location."""
    if found is None:
        if not all_stores:
            return {
                "en": "We sell online only for now. An agent will be happy to help.",
                "th": "ตอนนี้เราขายออนไลน์อย่างเดียวค่ะ เจ้าหน้าที่ยินดีช่วยเหลือนะคะ",
                "zh-Hant": "我們目前只在網上銷售，客服很樂意為您服務。",
                "zh-Hans": "我们目前只在网上销售，客服很乐意为您服务。",
            }[language]
        listed = "; ".join(f"{s.name}: {s.address}" for s in all_stores[:3])
        ask = {
            "en": "Share your location and we will tell you the nearest one.",
            "th": "ส่งตำแหน่งของคุณมา แล้วเราจะบอกสาขาที่ใกล้ที่สุดค่ะ",
            "zh-Hant": "傳送您的位置，我們會告訴您最近的門市。",
            "zh-Hans": "发送您的位置，我们会告诉您最近的门店。",
        }[language]
        return f"{listed}. {ask}"
    store, km = found
    today = store.hours.get(DAYS[local_now.weekday()])
    hours = {
        "en": f"open today {today}" if today else "closed today",
        "th": f"วันนี้เปิด {today}" if today else "วันนี้ปิด",
        "zh-Hant": f"今天營業 {today}" if today else "今天公休",
        "zh-Hans": f"今天营业 {today}" if today else "今天休息",
    }[language]
    away = f"{km:.1f} km"
    text = {
        "en": f"Our nearest store is {store.name}, {store.address} ({away} away), {hours}.",
        "th": f"สาขาที่ใกล้ที่สุดคือ {store.name} {store.address} (ห่าง {away}) {hours}ค่ะ",
        "zh-Hant": f"離您最近的門市是 {store.name}，{store.address}（約 {away}），{hours}。",
        "zh-Hans": f"离您最近的门店是 {store.name}，{store.address}（约 {away}），{hours}。",
    }[language]
    extras = [x for x in (store.phone, store.map_url) if x]
    return " ".join([text, *extras])
