"""Example graphflow plugin: count words and list the most frequent ones.

It shows the whole plugin API: a plugin-defined port type (WORD_COUNTS), nodes declared as
typed functions, widget constraints, an input check, an output node, and the two hooks.
"""

import re
from collections import Counter

from graphflow import Boolean, Int, String, hookimpl, node, port_type

WORD_COUNTS_TYPE, WordCounts = port_type(
    "WORD_COUNTS", "How often each word occurs in a text", color="#c27ba0"
)


@node("textstats.count_words", version="1.0.0", category="text/statistics")
def count_words(text: String(multiline=True), ignore_case: Boolean = True) -> WordCounts:
    """Count how often each word occurs in the text."""
    words = re.findall(r"[\w']+", text.lower() if ignore_case else text)
    return Counter(words)


@node("textstats.top_words", version="1.0.0", category="text/statistics")
def top_words(counts: WordCounts, n: Int(min=1, max=100) = 3) -> String:
    """The n most frequent words, most frequent first, as "word ×count" lines."""
    return "\n".join(f"{word} ×{count}" for word, count in counts.most_common(n))


@node("textstats.report", category="text/statistics", output=True)
def report(summary: String, title: String = "Top words") -> None:
    """Show the summary under a title (an output node)."""
    return {"text": [f"{title}:\n{summary}"]}


@report.check
def _title_not_blank(title: str, **_) -> str | None:
    return "title: must not be blank" if not title.strip() else None


@hookimpl
def graphflow_port_types():
    """The port types this plugin adds."""
    return [WORD_COUNTS_TYPE]


@hookimpl
def graphflow_nodes():
    """The nodes this plugin provides."""
    return [count_words, top_words, report]
