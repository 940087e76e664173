"""A self-contained HTML page per run: numbers first, then the figures beside it."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

_STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse}td,th{padding:2px 10px;border-bottom:1px solid #ddd;text-align:left}
img{max-width:100%;border:1px solid #eee;margin:6px 0}pre{background:#f6f6f6;padding:8px}
.small{color:#666;font-size:90%}"""


def table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in r) + "</tr>"
                   for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def page(title: str, sections: Sequence[tuple[str, str]], path: Path) -> Path:
    """Write ``sections`` ((heading, html body), ...) as one page at ``path``."""
    body = "".join(f"<h2>{html.escape(h)}</h2>\n{b}\n" for h, b in sections)
    path.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>"
                    f"{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
                    f"<h1>{html.escape(title)}</h1>\n{body}</body></html>\n")
    return path


def figure(src: str, caption: str) -> str:
    return (f"<figure><img src='{html.escape(src)}' alt='{html.escape(caption)}'>"
            f"<figcaption class='small'>{html.escape(caption)}</figcaption></figure>")


def pre(text: str) -> str:
    return f"<pre>{html.escape(text)}</pre>"
