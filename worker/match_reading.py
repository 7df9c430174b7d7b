"""Reading matches in their sentence: negation, contrast and intensity change how much a matched entry
counts.

A knowledge-base hit is a word, not a stance. 「你不是废物」 denies the insult; in 「虽然他很烦，但是我爱他」
the clause before 但是 is conceded and the one after is what the speaker means; 「太垃圾了！！」 says it
harder than 「有点垃圾」; and 「说女生都不会开车就是刻板印象」 or 「地域黑要不得」 name a stereotype or a slur to
argue against it — counter-speech, which a platform must not punish. Each rule multiplies the match's weight
and records why, so the verdict's explanation can cite it and the classifier sees the adjusted strength; a
denial (negation, counter-speech) also marks the match as not read as an attack.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from memeguard.schemas import HarmType, Intent
from worker.knowledge import Match, normalize

NEGATORS = ("不是", "并不是", "并非", "才不是", "没有", "不算", "不")
NOT_NEGATION = ("是不是", "是不", "要不", "不不")  # 你是不是傻逼 asks, it does not deny
CONTRAST = ("但是", "可是", "不过", "然而", "其实", "只是", "却")
INTENSIFIERS = ("太", "真是", "真", "非常", "特别", "超级", "超", "巨", "贼", "极其", "最", "好")
AFTER_INTENSIFIERS = ("死了", "极了", "透了", "爆了", "到家了")
DIMINISHERS = ("有点", "有些", "稍微", "略微", "一点")
REPEATED_MARKS = re.compile(r"[!！]{2,}|[?？]{3,}")

NEGATED, CONCEDED, MEANT = 0.3, 0.6, 1.15
COUNTERED = 0.3  # a group slur or stereotype named in counter-speech
STRONGER, WEAKER = 1.2, 0.8


def read(matches: Sequence[Match], text: str) -> list[Match]:
    """Each match with its weight adjusted by the words around it (order kept)."""
    norm = normalize(text)
    emphatic = bool(REPEATED_MARKS.search(text))
    counter = next((m for m in matches if m.entry.intent is Intent.COUNTER_SPEECH), None)
    return [_countered(_intensity(_contrast(_negation(m, norm), norm), norm, emphatic), counter) for m in matches]


def _countered(match: Match, counter: Match | None) -> Match:
    """A group slur or stereotype in a text that argues against discrimination or reports it (地域黑要不得;
    说女生都不会开车就是刻板印象; 被人骂是乡巴佬) is named, not meant. Only targeted harm: counter-speech does not
    excuse a personal insult beside it."""
    if counter is None or match.entry.harm is not HarmType.TARGETED_HARM:
        return match
    return match.adjusted(COUNTERED, f"处于反歧视/转述语境（「{counter.text}」）", denied=True)


def _negation(match: Match, norm: str) -> Match:
    """A negator right before the phrase denies it (不是废物); 是不是/要不 ask, they do not deny."""
    before = norm[max(0, match.start - 3) : match.start]
    if match.entry.softener or any(before.endswith(word) for word in NOT_NEGATION):
        return match
    negator = next((word for word in NEGATORS if before.endswith(word)), None)
    return match.adjusted(NEGATED, f"被「{negator}」否定", denied=True) if negator else match


def _contrast(match: Match, norm: str) -> Match:
    """Before a contrast marker the speaker concedes; after it comes what they mean. A phrase that itself
    contains the marker (你说得对但是) is a pattern of its own and is left alone."""
    end = match.start + len(match.text)
    markers = [
        (at, word)
        for word in CONTRAST
        if word not in match.text
        for at in _positions(norm, word)
        if at >= end or at + len(word) <= match.start
    ]
    if not markers:
        return match
    after = [word for at, word in markers if at >= end]
    if after:
        return match.adjusted(CONCEDED, f"位于转折「{after[0]}」之前（让步）")
    return match.adjusted(MEANT, f"位于转折「{markers[0][1]}」之后（真实态度）")


def _intensity(match: Match, norm: str, emphatic: bool) -> Match:
    """Degree words before (太, 超级), after (死了, 极了), repeated marks (！！) strengthen; hedges weaken."""
    before = norm[max(0, match.start - 2) : match.start]
    after = norm[match.start + len(match.text) : match.start + len(match.text) + 3]
    if hedge := next((w for w in DIMINISHERS if before.endswith(w)), None):
        return match.adjusted(WEAKER, f"程度词「{hedge}」弱化")
    word = next((w for w in INTENSIFIERS if before.endswith(w)), None) or next(
        (w for w in AFTER_INTENSIFIERS if after.startswith(w)), None
    )
    if word:
        match = match.adjusted(STRONGER, f"程度词「{word}」加强")
    if emphatic and match.entry.harm is not None:
        match = match.adjusted(STRONGER, "连续感叹/问号加强语气")
    return match


def _positions(text: str, word: str) -> list[int]:
    return [m.start() for m in re.finditer(re.escape(word), text)]


REGIONS = (
    "北京|天津|上海|重庆|河北|山西|辽宁|吉林|黑龙江|江苏|浙江|安徽|福建|江西|山东|河南|湖北|湖南|广东|"
    "海南|四川|贵州|云南|陕西|甘肃|青海|台湾|内蒙古?|广西|西藏|宁夏|新疆|香港|澳门|东北|南方|北方|西北|苏北|"
    "温州|潮汕|农村|乡下|外地"
)
GROUPS = re.compile(
    "女生|女性|女人|女孩|妇女|女权|女司机|男生|男性|男人|直男|男权|小仙女|同性恋|男同|女同|基佬|跨性别|lgbt|黑人|白人|"
    "黄种人|亚裔|非洲人|外国人|老外|犹太人|穆斯林|回族|维吾尔族?|藏族|少数民族|日本人|韩国人|美国人|印度人|残疾人|盲人|"
    f"聋哑人|农民工|穷人|(?:{REGIONS})(?:人|佬)"
)


def mentioned_groups(text: str) -> list[str]:
    """The groups of people a text names (gender, region, race and nationality, sexuality, religion,
    disability), first mention first: what the explanation cites when it says why a text that names a group
    was or was not read as an attack."""
    return list(dict.fromkeys(GROUPS.findall(normalize(text))))
