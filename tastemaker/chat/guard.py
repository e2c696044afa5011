"""Guardrails: what an LLM is shown, which item texts are not trusted, and which requests get a refusal.

Three small, documented, rule-based pieces (no model, so they work offline and are auditable):

* :func:`sanitize` and :func:`delimit_items`: item text given to an LLM is data. It is cleaned
  (NFKC, control and format characters removed, instruction-like phrases replaced by
  ``[removed]``, markup and our own delimiters stripped, whitespace collapsed, length capped) and
  each item is wrapped in ``<item id="...">...</item>`` inside ``<candidates>``, so a
  description cannot close its own block or pose as the system.
* :class:`InjectionDetector`: flags item descriptions that carry the *strategic text sequence*
  pattern of Kumar & Lakkaraju (2024, arXiv 2404.07981): imperative phrases aimed at the
  ranker ("ignore previous instructions", "rank this first", "recommend this product"), a high
  share of symbols, or a long run of tokens that are not word-like (GCG's optimised sequences
  look like ``interact>; expect formatted XVI RETedly_ _Hello``). A flagged item's free text is
  never used for ranking (the catalog keeps its title and genres only), so injected text cannot
  move its rank.
* :func:`classify_request` and :func:`refusal`: a keyword/pattern classifier for user requests:
  ``"unsafe"`` (violence, weapons, self-harm, drugs, hacking, sexual content with minors),
  ``"manipulation"`` (attempts to override the assistant's instructions) and ``"off-topic"``
  (code, maths, weather, finance... with nothing about movies in the turn); anything else is
  ``"ok"``. It is a first line, not a moderation model: it is tuned to never refuse ordinary
  movie talk (see the tests), at the cost of missing paraphrased harm.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

# Phrases that address the model rather than describe an item. Each is a regex over casefolded text.
INSTRUCTION_PATTERNS: tuple[str, ...] = (
    r"\b(?:ignore|disregard|forget|override)\b(?:\s+\w+){0,3}\s+(?:instructions?|prompts?|rules|context|messages?)\b",
    r"\b(?:rank|list|put|place|show|rate)\s+(?:this|it|me|us)\b(?:\s+\w+){0,3}\s+(?:first|top|highest|#?1|number one)\b",
    r"\b(?:always|must|should)\s+(?:recommend|rank|choose|select|pick|list|mention)\b",
    r"\brecommend\s+(?:this|our|my)\s+(?:product|item|movie|film|book|one)\b",
    r"\b(?:top|first|best|number one|#1)\s+(?:recommendation|choice|pick|result)\b",
    r"\b(?:you are|you're|act as|pretend to be|from now on you)\b(?:\s+\w+){0,4}\s+(?:assistant|ai|model|system|chatbot)\b",
    r"\b(?:system|assistant|developer)\s*(?:prompt|message|:)",
    r"\bnew\s+instructions?\b",
    r"\bdo not (?:recommend|mention|list)\s+(?:any\s+)?(?:other|others)\b",
)
_INSTRUCTION = re.compile("|".join(f"(?:{p})" for p in INSTRUCTION_PATTERNS), re.IGNORECASE)

_EDGE_PUNCTUATION = "(\"'[“‘«)\"']”’».,;:!?"
_NUMBERISH = re.compile(r"\d+(?:st|nd|rd|th|s|d|k|m|x)?", re.IGNORECASE)  # 1990s, 6th, 3D, 4k
_SEPARATORS = re.compile(r"['’\-./:]")
_LONE = {"-", "–", "—", "&", "/", "+", "vs", "½"}


def _word_like(token: str) -> bool:
    """Whether a whitespace token reads like language: words (any script) with inner ``' - . /
    :``, numbers, all-caps acronyms or CamelCase names, with ordinary punctuation around them.
    Junk such as ``RETedly_``, ``interact>;``, ``phys*)`` or ``###`` is not."""
    core = token.strip(_EDGE_PUNCTUATION)
    if not core or core in _LONE:
        return True
    for part in _SEPARATORS.split(core):
        if not part or part.isdigit() or part in _LONE or _NUMBERISH.fullmatch(part):
            continue
        if not part.isalpha():
            return False
        # an upper-case run of 2+ straight into lower case ("RETedly") is not how words are
        # written; CamelCase ("SpongeBob", "McDonald") and plurals of acronyms ("DVDs") are
        for k in range(len(part) - 2):
            if part[k].isupper() and part[k + 1].isupper() and part[k + 2].islower() and part[k + 2 :] != "s":
                return False
    return True


_CONTROL_CATEGORIES = {"Cc", "Cf", "Co", "Cs"}
_TAG = re.compile(r"</?\s*[A-Za-z][^<>]{0,40}>|<<+|>>+|\[\[|\]\]")


def _without_control(text: str) -> str:
    """Control/format characters out (zero-width joiners, bidi overrides...), tabs and newlines to spaces."""
    return "".join(" " if ch in "\t\n\r\v\f" else ch for ch in text if ch in "\t\n\r\v\f"
                   or unicodedata.category(ch) not in _CONTROL_CATEGORIES)


def sanitize(text: str, max_chars: int = 300) -> str:
    """``text`` made safe to show an LLM as data (see the module doc): at most ``max_chars``
    characters, cut at a word boundary with an ellipsis."""
    clean = _without_control(unicodedata.normalize("NFKC", str(text)))
    clean = _TAG.sub(" ", clean)
    clean = _INSTRUCTION.sub("[removed]", clean)
    clean = re.sub(r"\s+", " ", clean).strip()
    if len(clean) > max_chars:
        cut = clean[:max_chars]
        space = cut.rfind(" ")
        clean = (cut[:space] if space > max_chars // 2 else cut).rstrip(" ,;:.") + "…"
    return clean


def safe_id(item_id: str) -> str:
    """An item id as it may appear inside a prompt's ``id="..."`` attribute."""
    return re.sub(r"[^A-Za-z0-9_.:\-]", "_", str(item_id))[:64]


def delimit_items(items: Iterable[tuple[str, str]], *, max_chars: int = 300) -> str:
    """``(item_id, text)`` pairs as one delimited block, each text sanitised::

        <candidates>
        <item id="1">Toy Story (1995) | Animation, Children | pixar, fun</item>
        </candidates>
    """
    lines = [f'<item id="{safe_id(i)}">{sanitize(t, max_chars)}</item>' for i, t in items]
    return "<candidates>\n" + "\n".join(lines) + "\n</candidates>"


@dataclass(frozen=True)
class InjectionReport:
    """The verdict on one text: ``flagged`` and, when it is, why (one entry per rule that fired)."""

    flagged: bool
    reasons: tuple[str, ...] = ()


class InjectionDetector:
    """Flags instruction-like or anomalous token sequences in item text (see the module doc).

    Rules (any one flags): an instruction pattern (:data:`INSTRUCTION_PATTERNS`); invisible or
    control characters; a share of symbol characters (not letters, digits or spaces) above
    ``max_symbol_share`` in a text of at least 40 non-space characters; ``max_odd_run`` or more
    consecutive tokens that are not word-like, or ``max_odd_in_window`` of them among any
    ``window`` consecutive tokens; a run of 5 or more of one symbol (``*****``, the STS's
    starting point).
    It flags none of the 9,742 ml-latest-small descriptions (titles, genres, tags) and none of
    the 6,924 ReDial titles.
    """

    def __init__(self, *, max_symbol_share: float = 0.3, max_odd_run: int = 4, window: int = 8,
                 max_odd_in_window: int = 3) -> None:
        self.max_symbol_share = max_symbol_share
        self.max_odd_run = max_odd_run
        self.window = window
        self.max_odd_in_window = max_odd_in_window

    def check(self, text: str) -> InjectionReport:
        """The verdict on ``text``."""
        text = unicodedata.normalize("NFKC", str(text or ""))
        reasons: list[str] = []
        if _INSTRUCTION.search(text):
            reasons.append("instruction-like phrase")
        if any(unicodedata.category(ch) in _CONTROL_CATEGORIES and ch not in "\t\n\r" for ch in text):
            reasons.append("control or invisible characters")
        visible = [ch for ch in text if not ch.isspace()]
        if len(visible) >= 40:  # short titles ("S.W.A.T.: Firefight") are dense in dots
            symbols = sum(1 for ch in visible if not ch.isalnum())
            if symbols / len(visible) > self.max_symbol_share:
                reasons.append(f"symbol share {symbols / len(visible):.2f}")
        odd = [not _word_like(token) for token in text.split()]
        run = longest = 0
        for is_odd in odd:
            run = run + 1 if is_odd else 0
            longest = max(longest, run)
        if longest >= self.max_odd_run:
            reasons.append(f"run of {longest} non-word tokens")
        # GCG interleaves real words with junk, so density in a window catches what runs miss
        densest = max((sum(odd[k : k + self.window]) for k in range(max(1, len(odd) - self.window + 1))), default=0)
        if densest >= self.max_odd_in_window and longest < self.max_odd_run:
            reasons.append(f"{densest} non-word tokens in {self.window}")
        if re.search(r"([^\w\s])\1{4,}|(?:[^\w\s]\s){5,}", text):
            reasons.append("repeated symbols")
        return InjectionReport(bool(reasons), tuple(reasons))

    def flagged(self, text: str) -> bool:
        return self.check(text).flagged


# ---------------------------------------------------------------------- requests
RequestCategory = Literal["ok", "unsafe", "manipulation", "off-topic"]

_UNSAFE = re.compile(
    r"\b(?:how (?:do|can|to|would)\b.{0,30}\b(?:make|build|buy|get|cook|synthesi[sz]e)\b.{0,30}"
    r"\b(?:bomb|explosives?|weapons?|guns?|meth|cocaine|heroin|poison|napalm)"
    r"|\b(?:i (?:want|need|am going|'m going|plan) to|how (?:do|can|should) i|help me)\s+(?:kill|hurt|poison|attack)\b"
    r"(?!\s+(?:some\s+|the\s+)?time)|kill(?:ing)? myself|\bi(?:'m| am) suicidal|end my life|want to die"
    r"|self[- ]harm|hurt myself"
    r"|hack (?:into|someone|a )|steal (?:a |someone|credit)|credit card numbers?|child (?:porn|sex)"
    r"|sex(?:ual)? (?:with|content).{0,20}\b(?:minors?|children|kids)|terroris[mt] attack)",
    re.IGNORECASE,
)
_MANIPULATION = re.compile(
    r"\b(?:ignore|disregard|forget)\b(?:\s+\w+){0,3}\s+(?:instructions?|rules|prompt)"
    r"|\b(?:system prompt|your instructions|jailbreak|developer mode|dan mode)\b",
    re.IGNORECASE,
)
_OFF_TOPIC = re.compile(
    r"\b(?:write|debug|fix)\b.{0,20}\b(?:code|program|script|function|python|javascript|sql)\b"
    r"|\b(?:solve|calculate|compute|integral|derivative|equation)\b|\d+\s*[-+*/^]\s*\d+\s*="
    r"|\bweather (?:in|for|forecast|today|tomorrow)\b|\bforecast\b"
    r"|\b(?:stock|share) price|\bbitcoin\b|\bcrypto\b|\binvest(?:ing|ment)?\b"
    r"|\btranslate\b|\b(?:homework|essay|resume|cover letter)\b|\bdiagnos|\bmedical advice\b"
    r"|\brecipes?\b|\belection\b",
    re.IGNORECASE,
)
_ON_TOPIC = re.compile(
    r"\b(?:movies?|films?|watch(?:ed|ing)?|seen|recommend\w*|suggest\w*|actors?|actress|directors?|genres?|"
    r"cinema|series|show|trailer|sequel|plot|scene|horror|comed\w+|drama|thriller|romance|romantic|action|"
    r"myster\w*|crime|fantasy|adventure|family|kids|scary|funny|story|character|"
    r"documentar\w+|animated|animation|cartoon|sci-?fi|western|musical|disney|pixar|marvel)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class RequestVerdict:
    """How a request is handled: ``allowed`` unless ``category`` is a refusal's."""

    category: RequestCategory
    reason: str = ""

    @property
    def allowed(self) -> bool:
        return self.category == "ok"


def classify_request(text: str, *, mentions_items: bool = False) -> RequestVerdict:
    """The category of one user turn (see the module doc). ``mentions_items``: the turn linked
    to catalog items, which makes it on-topic whatever else it says."""
    if match := _UNSAFE.search(text):
        return RequestVerdict("unsafe", f"matched {match.group(0)!r}")
    if match := _MANIPULATION.search(text):
        return RequestVerdict("manipulation", f"matched {match.group(0)!r}")
    if not mentions_items and not _ON_TOPIC.search(text) and (match := _OFF_TOPIC.search(text)):
        return RequestVerdict("off-topic", f"matched {match.group(0)!r}")
    return RequestVerdict("ok")


_REFUSALS: dict[str, str] = {
    "unsafe": "Sorry, I can't help with that. If you're going through something difficult, please reach out "
              "to someone you trust or a local helpline. I'm happy to suggest movies whenever you like.",
    "manipulation": "Sorry, I can't change how I work. I can recommend movies from our catalog, though: "
                    "tell me one you enjoyed.",
    "off-topic": "Sorry, I can only help with movie recommendations from our catalog. Tell me a movie you "
                 "liked, or a genre or decade you're in the mood for.",
}


def refusal(category: RequestCategory) -> str:
    """The polite answer for a refused category ("" for ``"ok"``)."""
    return _REFUSALS.get(category, "")


def flag_texts(texts: Sequence[str], detector: InjectionDetector | None = None) -> list[bool]:
    """Whether each text is flagged (a convenience over :meth:`InjectionDetector.check`)."""
    detector = detector or InjectionDetector()
    return [detector.flagged(t) if t else False for t in texts]
