"""Simulated customers: who they are, what they ask, how they answer (Thai, Chinese, English).

Pure data and choices; the server decides when they speak. Lines are about what shops on
WhatsApp are asked all day: prices, parcels, store addresses.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Persona:
    wa_id: str
    name: str
    language: str
    openers: tuple[str, ...]
    replies: tuple[str, ...]


THAI_OPENERS = (
    "สวัสดีค่ะ iPhone 15 Pro Max ราคาเท่าไหร่คะ",
    "ส่งของไปเชียงใหม่กี่วันคะ ค่าส่งเท่าไหร่",
    "พัสดุของฉันถึงไหนแล้วคะ เลขคำสั่งซื้อ 10293",
    "ร้านที่สยามเปิดกี่โมงครับ",
)
THAI_REPLIES = ("ขอบคุณค่ะ", "โอเคครับ ตกลง", "มีสีอื่นไหมคะ", "ผ่อนได้ไหมครับ")
CHINESE_OPENERS = (
    "你好，AirPods Pro 2 現在有優惠嗎？",
    "請問寄到台中運費多少？",
    "我的包裹到哪裡了？訂單號 58812",
    "旺角分店的地址是？",
)
CHINESE_REPLIES = ("謝謝！", "好的，我考慮一下", "可以貨到付款嗎？", "有其他顏色嗎？")
ENGLISH_OPENERS = (
    "Hi, how much is the Galaxy S24 Ultra?",
    "Where is my parcel? Order 77120",
    "What are your store opening hours in Causeway Bay?",
    "Do you ship to Penang? How much?",
)
ENGLISH_REPLIES = ("Thanks!", "Great, I'll take it", "Any discount for two?", "Ok, got it")

PERSONAS = (
    Persona("66812345678", "สมชาย ใจดี", "th", THAI_OPENERS, THAI_REPLIES),
    Persona("66898765432", "สุดารัตน์ แก้วมณี", "th", THAI_OPENERS, THAI_REPLIES),
    Persona("85291234567", "陳大文", "zh", CHINESE_OPENERS, CHINESE_REPLIES),
    Persona("886912345678", "林怡君", "zh", CHINESE_OPENERS, CHINESE_REPLIES),
    Persona("85269871234", "Emily Wong", "en", ENGLISH_OPENERS, ENGLISH_REPLIES),
    Persona("886911222333", "David Tsai", "en", ENGLISH_OPENERS, ENGLISH_REPLIES),
)
BY_WA_ID = {persona.wa_id: persona for persona in PERSONAS}


def persona_for(wa_id: str) -> Persona | None:
    return BY_WA_ID.get(wa_id)


def opener(rng: random.Random, persona: Persona) -> str:
    return rng.choice(persona.openers)


def reply(rng: random.Random, persona: Persona) -> str:
    return rng.choice(persona.replies)


def is_reachable(wa_id: str) -> bool:
    """By convention, numbers ending in 999 are not WhatsApp users (error 131026)."""
    return not wa_id.endswith("999")
