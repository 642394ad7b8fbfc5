"""Nothing the grader keeps from a student's notebook may run in the instructor's browser.

The executed notebooks (grades/<a>/executed/, nbgrader's autograded/) are opened in formgrader and
rendered by nbconvert, which shows HTML and SVG outputs, markdown and raw HTML cells as they are:
an output with a <script>, an `onerror=` attribute, a `javascript:` link or an
application/javascript bundle would run with the instructor's session (stock nbgrader has the same
flaw). `clean_notebook` makes a notebook safe to keep, with bleach doing the HTML work:

  * outputs: JavaScript mime types (application/javascript, text/javascript, ...) and widget views
    are dropped; text/html, image/svg+xml and text/markdown are cleaned to an allow-list of tags and
    attributes (no <script>, <iframe>, <object>, <style>, no on* attributes, URLs only http(s),
    mailto, data and in-page #fragments);
  * markdown cells and raw cells: cleaned the same way, but only when they contain something that
    could run, so ordinary written answers (math with `<`, code spans) stay exactly as written;
  * attachments other than raster images are dropped.
Plain text, images (PNG, JPEG, GIF), LaTeX and JSON outputs are kept unchanged.
"""
from __future__ import annotations

import re

import bleach
from bleach.css_sanitizer import CSSSanitizer

HTML_TAGS = frozenset({
    "a", "abbr", "b", "blockquote", "br", "caption", "code", "col", "colgroup", "dd", "del", "details", "div",
    "dl", "dt", "em", "figcaption", "figure", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins",
    "kbd", "li", "mark", "ol", "p", "pre", "q", "s", "samp", "small", "span", "strong", "sub", "summary",
    "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "tt", "u", "ul", "var"})
SVG_TAGS = frozenset({
    "svg", "g", "defs", "path", "rect", "circle", "ellipse", "line", "polyline", "polygon", "text", "tspan",
    "title", "desc", "use", "symbol", "marker", "clippath", "clipPath", "lineargradient", "linearGradient",
    "radialgradient", "radialGradient", "stop", "pattern", "mask", "image", "metadata"})
HTML_ATTRS = ["class", "id", "title", "align", "valign", "colspan", "rowspan", "width", "height", "alt", "src",
              "href", "border", "cellpadding", "cellspacing", "start", "type", "open", "lang", "dir"]
SVG_ATTRS = [
    "version", "xmlns", "xmlns:xlink", "xlink:href", "viewBox", "preserveAspectRatio", "x", "y", "x1", "y1", "x2",
    "y2", "cx", "cy", "r", "rx", "ry", "d", "points", "transform", "fill", "fill-opacity", "fill-rule", "stroke",
    "stroke-width", "stroke-opacity", "stroke-linecap", "stroke-linejoin", "stroke-dasharray",
    "stroke-dashoffset", "stroke-miterlimit", "opacity", "clip-path", "clip-rule", "clipPathUnits", "font-size",
    "font-family", "font-weight", "font-style", "text-anchor", "dominant-baseline", "dx", "dy", "offset",
    "stop-color", "stop-opacity", "gradientUnits", "gradientTransform", "patternUnits", "markerWidth",
    "markerHeight", "refX", "refY", "orient", "mask", "style"]
PROTOCOLS = ["http", "https", "mailto", "data"]
SVG_STYLE = ["fill", "fill-opacity", "fill-rule", "stroke", "stroke-width", "stroke-opacity", "stroke-linecap",
             "stroke-linejoin", "stroke-dasharray", "stroke-dashoffset", "stroke-miterlimit", "opacity",
             "font-size", "font-family", "font-weight", "font-style", "text-anchor", "color", "background-color",
             "text-align", "display", "visibility", "clip-path", "mix-blend-mode"]
_CLEANER = bleach.sanitizer.Cleaner(
    tags=HTML_TAGS | SVG_TAGS, attributes=HTML_ATTRS + SVG_ATTRS, protocols=PROTOCOLS, strip=True,
    strip_comments=True, css_sanitizer=CSSSanitizer(allowed_css_properties=SVG_STYLE,
                                                    allowed_svg_properties=SVG_STYLE))
CLEANED_TYPES = ("text/html", "image/svg+xml", "text/markdown")
SAFE_ATTACHMENTS = ("image/png", "image/jpeg", "image/gif")
# Something that can run or load in a browser; markdown without any of these is left untouched.
_RISKY = re.compile(r"</?(script|iframe|frame|object|embed|style|link|meta|base|form|svg|math|img|a|"
                    r"input|button|video|audio|source|template)\b|\bon[a-z]+\s*=|javascript\s*:|vbscript\s*:|"
                    r"data\s*:\s*text/html", re.IGNORECASE)
_CONTENT_DROPPED = re.compile(r"<(script|style|iframe|object|embed|template|noscript)\b.*?(</\1\s*>|$)",
                              re.IGNORECASE | re.DOTALL)   # their text is code, not content: gone too
_STYLE_URL = re.compile(r"(url|expression|@import)", re.IGNORECASE)


def _runs_code(mime: str) -> bool:
    mime = mime.lower()
    return "javascript" in mime or "ecmascript" in mime or mime.startswith("application/vnd.jupyter.widget")


def clean_html(text: str) -> str:
    """HTML (or SVG) reduced to the allow-list: no scripts, handlers, frames or javascript: URLs."""
    cleaned = _CLEANER.clean(_CONTENT_DROPPED.sub("", text))
    # style attributes keep drawing properties only (matplotlib's SVG), never url()/expression()
    return re.sub(r'\sstyle="[^"]*"', lambda m: "" if _STYLE_URL.search(m.group(0)) else m.group(0), cleaned)


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def clean_output(output) -> None:
    """Clean one output in place (display_data, execute_result; streams and errors are plain text)."""
    data = output.get("data")
    if not isinstance(data, dict):
        return
    for mime in list(data):
        if _runs_code(mime):
            del data[mime]
        elif mime in CLEANED_TYPES:
            data[mime] = clean_html(_text(data[mime]))
    if not data:
        data["text/plain"] = "[grader] an output that would run code in the browser was removed"


def clean_source(text: str) -> str:
    """A markdown or raw cell's source, cleaned only when it holds something that could run."""
    return clean_html(text) if _RISKY.search(text) else text


def clean_notebook(nb):
    """Make `nb` (an nbformat v4 notebook) safe to open in formgrader; cleans in place, returns nb."""
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code":
            for output in cell.get("outputs", []):
                clean_output(output)
        elif cell.get("cell_type") in ("markdown", "raw"):
            cell["source"] = clean_source(_text(cell.get("source", "")))
        attachments = cell.get("attachments")
        if isinstance(attachments, dict):
            for name in list(attachments):
                bundle = attachments[name]
                if not isinstance(bundle, dict) or any(m not in SAFE_ATTACHMENTS for m in bundle):
                    del attachments[name]
    return nb
