"""The web app's words in English, Thai and Traditional Chinese, and which of them a visitor
gets: an explicit choice (the ``lang`` cookie), else the browser's Accept-Language."""

from __future__ import annotations

from babel import Locale

LANGUAGES = {"en": "English", "th": "ไทย", "zh-Hant": "繁體中文"}
DEFAULT = "en"

WORDS: dict[str, dict[str, str]] = {
    "en": {
        "contacts": "Contacts",
        "search_contacts": "Search by name, phone or e-mail",
        "no_contacts": "No contacts found.",
        "pick_contact": "Pick a contact on the left.",
        "profile": "Profile",
        "timeline": "Timeline",
        "why": "Why",
        "why_help": "What automation and the sending policy did for this contact, and why.",
        "tags": "Tags",
        "consent": "Consent",
        "score": "Score",
        "churn_risk": "Churn risk",
        "yes": "yes",
        "no": "no",
        "fields": "Fields",
        "maybe_same": "Maybe the same person",
        "nothing_yet": "Nothing yet.",
        "rule": "Rule",
        "sent_msg": "Message",
        "sign_in": "Sign in",
        "sign_out": "Sign out",
        "workspace": "Workspace",
        "email": "E-mail",
        "password": "Password",
        "wrong_login": "Wrong workspace, e-mail or password.",
        "inbox": "Inbox",
        "mine": "Mine",
        "unassigned": "Unassigned",
        "all": "All",
        "open": "Open",
        "pending": "Pending",
        "resolved": "Resolved",
        "snoozed": "Snoozed",
        "no_conversations": "No conversations here.",
        "pick_conversation": "Pick a conversation on the left.",
        "reply_placeholder": "Type a reply — / for quick replies",
        "send": "Send",
        "window_open_until": "24-hour window open until {time}",
        "window_closed": "The 24-hour window is closed: only an approved template can reach "
        "this customer.",
        "pick_template": "Send a template",
        "template": "Template",
        "resolve": "Resolve",
        "reopen": "Reopen",
        "assign_to_me": "Assign to me",
        "status_queued": "queued",
        "status_sending": "sending",
        "status_sent": "sent",
        "status_delivered": "delivered",
        "status_read": "read",
        "status_failed": "failed",
        "status_deferred": "deferred",
        "status_skipped": "skipped",
        "status_uncertain": "uncertain",
        "live": "live",
        "offline": "reconnecting…",
        "note": "Note",
        "language": "Language",
    },
    "th": {
        "contacts": "รายชื่อลูกค้า",
        "search_contacts": "ค้นหาด้วยชื่อ เบอร์โทร หรืออีเมล",
        "no_contacts": "ไม่พบรายชื่อ",
        "pick_contact": "เลือกรายชื่อทางซ้าย",
        "profile": "ข้อมูล",
        "timeline": "ไทม์ไลน์",
        "why": "เหตุผล",
        "why_help": "สิ่งที่ระบบอัตโนมัติและนโยบายการส่งทำกับลูกค้ารายนี้ และเหตุผล",
        "tags": "แท็ก",
        "consent": "ความยินยอม",
        "score": "คะแนน",
        "churn_risk": "เสี่ยงเลิกซื้อ",
        "yes": "ใช่",
        "no": "ไม่",
        "fields": "ฟิลด์",
        "maybe_same": "อาจเป็นคนเดียวกัน",
        "nothing_yet": "ยังไม่มี",
        "rule": "กฎ",
        "sent_msg": "ข้อความ",
        "sign_in": "เข้าสู่ระบบ",
        "sign_out": "ออกจากระบบ",
        "workspace": "เวิร์กสเปซ",
        "email": "อีเมล",
        "password": "รหัสผ่าน",
        "wrong_login": "เวิร์กสเปซ อีเมล หรือรหัสผ่านไม่ถูกต้อง",
        "inbox": "กล่องข้อความ",
        "mine": "ของฉัน",
        "unassigned": "ยังไม่มีผู้รับผิดชอบ",
        "all": "ทั้งหมด",
        "open": "เปิดอยู่",
        "pending": "รอดำเนินการ",
        "resolved": "ปิดแล้ว",
        "snoozed": "เลื่อนไว้",
        "no_conversations": "ไม่มีบทสนทนาในมุมมองนี้",
        "pick_conversation": "เลือกบทสนทนาทางซ้าย",
        "reply_placeholder": "พิมพ์ข้อความตอบกลับ — พิมพ์ / เพื่อใช้ข้อความด่วน",
        "send": "ส่ง",
        "window_open_until": "หน้าต่าง 24 ชั่วโมงเปิดถึง {time}",
        "window_closed": "หน้าต่าง 24 ชั่วโมงปิดแล้ว: ส่งได้เฉพาะเทมเพลตที่อนุมัติแล้วเท่านั้น",
        "pick_template": "ส่งเทมเพลต",
        "template": "เทมเพลต",
        "resolve": "ปิดบทสนทนา",
        "reopen": "เปิดอีกครั้ง",
        "assign_to_me": "มอบหมายให้ฉัน",
        "status_queued": "อยู่ในคิว",
        "status_sending": "กำลังส่ง",
        "status_sent": "ส่งแล้ว",
        "status_delivered": "ถึงแล้ว",
        "status_read": "อ่านแล้ว",
        "status_failed": "ส่งไม่สำเร็จ",
        "status_deferred": "เลื่อนการส่ง",
        "status_skipped": "ข้าม",
        "status_uncertain": "ไม่แน่ชัด",
        "live": "สด",
        "offline": "กำลังเชื่อมต่อใหม่…",
        "note": "บันทึก",
        "language": "ภาษา",
    },
    "zh-Hant": {
        "contacts": "聯絡人",
        "search_contacts": "以姓名、電話或電子郵件搜尋",
        "no_contacts": "找不到聯絡人。",
        "pick_contact": "請在左側選擇聯絡人。",
        "profile": "資料",
        "timeline": "時間軸",
        "why": "原因",
        "why_help": "自動化與發送政策對這位聯絡人做了什麼，以及原因。",
        "tags": "標籤",
        "consent": "同意",
        "score": "分數",
        "churn_risk": "流失風險",
        "yes": "是",
        "no": "否",
        "fields": "欄位",
        "maybe_same": "可能是同一人",
        "nothing_yet": "尚無資料。",
        "rule": "規則",
        "sent_msg": "訊息",
        "sign_in": "登入",
        "sign_out": "登出",
        "workspace": "工作區",
        "email": "電子郵件",
        "password": "密碼",
        "wrong_login": "工作區、電子郵件或密碼錯誤。",
        "inbox": "收件匣",
        "mine": "我的",
        "unassigned": "未指派",
        "all": "全部",
        "open": "進行中",
        "pending": "待處理",
        "resolved": "已解決",
        "snoozed": "稍後處理",
        "no_conversations": "這裡沒有對話。",
        "pick_conversation": "請從左側選擇對話。",
        "reply_placeholder": "輸入回覆 — 輸入 / 使用快速回覆",
        "send": "傳送",
        "window_open_until": "24 小時視窗開放至 {time}",
        "window_closed": "24 小時視窗已關閉：只能傳送已核准的範本給這位顧客。",
        "pick_template": "傳送範本",
        "template": "範本",
        "resolve": "標記為已解決",
        "reopen": "重新開啟",
        "assign_to_me": "指派給我",
        "status_queued": "排隊中",
        "status_sending": "傳送中",
        "status_sent": "已傳送",
        "status_delivered": "已送達",
        "status_read": "已讀",
        "status_failed": "傳送失敗",
        "status_deferred": "延後傳送",
        "status_skipped": "已略過",
        "status_uncertain": "狀態不明",
        "live": "即時",
        "offline": "重新連線中…",
        "note": "備註",
        "language": "語言",
    },
}


def choose_language(chosen: str | None, accept_language: str | None) -> str:
    """The visitor's language among ours: their explicit choice, else the first of their
    browser's languages we speak (``zh-TW`` and ``zh-HK`` are Traditional Chinese, ``zh-CN``
    is not ours), else English."""
    if chosen in WORDS:
        return chosen
    weighted = []
    for position, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        try:
            weight = float(params.strip()[2:]) if params.strip().startswith("q=") else 1.0
        except ValueError:
            weight = 0.0
        if tag and tag != "*":
            weighted.append((-weight, position, tag))
    for _, _, tag in sorted(weighted):
        try:
            locale = Locale.parse(tag, sep="-")
        except (ValueError, TypeError):  # a tag babel does not know: try the next
            continue
        if locale.language in ("en", "th"):
            return locale.language
        if locale.language == "zh" and locale.script == "Hant":
            return "zh-Hant"
    return DEFAULT


def words(language: str) -> dict[str, str]:
    return WORDS.get(language, WORDS[DEFAULT])
