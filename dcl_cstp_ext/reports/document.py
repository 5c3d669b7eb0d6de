"""A report as a list of blocks, written both as Markdown and as one self-contained HTML page (pictures embedded).

Text in paragraphs, list items, table cells, headings and captions may use inline Markdown (`` `code` ``,
``**bold**``, ``*italic*``, ``[text](url)``): the Markdown output keeps it, the HTML renders it and escapes the rest.
"""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

__all__ = ["Document", "inline_html"]

# small pictures (grids of 32-64 px thumbnails) are scaled up by a whole factor to at least this display width ...
MIN_DISPLAY_WIDTH = 480
# ... unless that makes them taller than this; the page's width caps every picture (max-width: 100%)
MAX_SCALED_HEIGHT = 720

# `code`, **bold**, *italic* (not inside a word or a path such as a/*/b*), [text](url)
_INLINE = re.compile(r"`([^`]+)`|\*\*(?=\S)(.+?)(?<=\S)\*\*|(?<![\w/*])\*(?=[^\s*])([^*]+?)(?<=\S)\*(?![\w/*])"
                     r"|\[([^\]]+)\]\(([^)\s]+)\)")
_NUMBER = re.compile(r"[-+]?(\d[\d,]*(\.\d*)?|\.\d+)([eE][-+]?\d+)?%?( ± [\d.]+%?)?|n/a|-")  # right-aligned
_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222;"
    "line-height:1.45}h1,h2,h3,h4,h5,h6{line-height:1.2}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;"
    "margin-top:1.8em}h3{font-size:1.3em}h4{font-size:1.1em}.table{overflow-x:auto}"
    "table{border-collapse:collapse;margin:1em 0;font-size:95%}"
    "td,th{border:1px solid #bbb;padding:4px 7px;text-align:left;vertical-align:top}th{background:#eee}"
    "td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}"
    "img{max-width:100%;height:auto;display:block}img.px{image-rendering:pixelated}figure{margin:1em 0}"
    "figcaption{color:#555;font-size:90%;margin-top:.3em}code{background:#f3f3f3;padding:0 .2em;"
    "border-radius:3px;font-size:90%;overflow-wrap:anywhere}pre{background:#f6f6f6;padding:1em;overflow:auto;"
    "white-space:pre-wrap}pre code{background:none;padding:0}"
)


def inline_html(text: str) -> str:
    """``text`` with its inline Markdown (code, bold, italic, links) as HTML and everything else escaped.

    >>> inline_html("Kept **3** of `a<b>` *all*")
    'Kept <strong>3</strong> of <code>a&lt;b&gt;</code> <em>all</em>'
    """
    out, pos = [], 0
    for m in _INLINE.finditer(text):
        out.append(html.escape(text[pos:m.start()]))
        code, bold, italic, label, url = m.groups()
        if code is not None:
            out.append(f"<code>{html.escape(code)}</code>")
        elif bold is not None:
            out.append(f"<strong>{inline_html(bold)}</strong>")
        elif italic is not None:
            out.append(f"<em>{inline_html(italic)}</em>")
        else:
            out.append(f"<a href='{html.escape(url)}'>{inline_html(label)}</a>")
        pos = m.end()
    out.append(html.escape(text[pos:]))
    return "".join(out)


def _plain(text: str) -> str:
    """``text`` without its inline Markdown marks (for an ``alt`` attribute)."""
    return _INLINE.sub(lambda m: m.group(1) or m.group(2) or m.group(3) or m.group(4), text)


def _breakable(markup: str) -> str:
    """A line may break after an underscore of ``markup``'s text (long column names such as ``encoder_lr_scale``)."""
    return re.sub(r"_(?![^<]*>)", "_<wbr>", markup)


def _figure(path: Path, caption: str) -> str:
    """A picture embedded as base64, scaled up (pixelated) to a readable width when it is small."""
    with Image.open(path) as im:
        (width, height), mime = im.size, Image.MIME.get(im.format or "", "image/png")
    factor = max(1, min(math.ceil(MIN_DISPLAY_WIDTH / width), MAX_SCALED_HEIGHT // height))
    size = f" class='px' style='width:{width * factor}px'" if factor > 1 else f" style='width:{width}px'"
    data = base64.b64encode(path.read_bytes()).decode()
    return (f"<figure><img src='data:{mime};base64,{data}' alt='{html.escape(_plain(caption))}'{size}>"
            f"<figcaption>{inline_html(caption)}</figcaption></figure>")


class Document:
    """Blocks (headings, paragraphs, tables, pictures, bullet lists, code) rendered by :meth:`markdown` and
    :meth:`html`. Picture links in the Markdown are relative to ``root`` (the folder the Markdown is written to)."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else None
        self.blocks: list[tuple] = []

    def heading(self, level: int, text: str) -> None:
        self.blocks.append(("heading", level, text))

    def paragraph(self, text: str) -> None:
        self.blocks.append(("paragraph", text))

    def table(self, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        self.blocks.append(("table", list(header), [list(r) for r in rows]))

    def image(self, path: str | Path | None, caption: str) -> None:
        """A picture (a path as given, not relative to ``root``); None is left out, and so is, in the HTML, a
        file that does not exist."""
        if path is not None:
            self.blocks.append(("image", Path(path), caption))

    def bullets(self, items: Sequence[str]) -> None:
        self.blocks.append(("bullets", list(items)))

    def code(self, text: str) -> None:
        self.blocks.append(("code", text))

    def extend(self, other: Document, shift: int = 0) -> None:
        """Append ``other``'s blocks, its headings ``shift`` levels deeper (at most level 6)."""
        for b in other.blocks:
            self.blocks.append(("heading", min(6, b[1] + shift), b[2]) if b[0] == "heading" else b)

    def markdown(self) -> str:
        out = []
        for kind, *a in self.blocks:
            if kind == "heading":
                out.append("#" * a[0] + " " + a[1])
            elif kind == "paragraph":
                out.append(a[0])
            elif kind == "table":
                out.append("| " + " | ".join(a[0]) + " |")
                out.append("|" + "---|" * len(a[0]))
                out += ["| " + " | ".join(r) + " |" for r in a[1]]
            elif kind == "image":
                path = a[0]
                if self.root is not None and path.is_relative_to(self.root):
                    path = path.relative_to(self.root)
                out.append(f"![{a[1]}]({path})\n\n*{a[1]}*")
            elif kind == "bullets":
                out += [f"- {item}" for item in a[0]]
            elif kind == "code":
                out.append("```\n" + a[0] + "\n```")
            out.append("")
        return "\n".join(out)

    def html(self, title: str) -> str:
        out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
               f"<style>{_STYLE}</style></head><body>"]
        for kind, *a in self.blocks:
            if kind == "heading":
                out.append(f"<h{a[0]}>{inline_html(a[1])}</h{a[0]}>")
            elif kind == "paragraph":
                out.append(f"<p>{inline_html(a[0])}</p>")
            elif kind == "table":
                header = "".join(f"<th>{_breakable(inline_html(c))}</th>" for c in a[0])
                out.append(f"<div class='table'><table><tr>{header}</tr>")
                out += ["<tr>" + "".join(f"<td{' class=num' if _NUMBER.fullmatch(_plain(c).strip()) else ''}>"
                                         f"{inline_html(c)}</td>" for c in r) + "</tr>" for r in a[1]]
                out.append("</table></div>")
            elif kind == "image" and a[0].is_file():
                out.append(_figure(a[0], a[1]))
            elif kind == "bullets":
                out.append("<ul>" + "".join(f"<li>{inline_html(item)}</li>" for item in a[0]) + "</ul>")
            elif kind == "code":
                out.append(f"<pre><code>{html.escape(a[0])}</code></pre>")
        out.append("</body></html>")
        return "\n".join(out)
