"""What an HTML page would load from the network when opened (shared by report and demo tests)."""

from __future__ import annotations

import re
from html.parser import HTMLParser

# Attributes whose URL a browser fetches on its own (links a reader clicks are not loads).
_LOADING = {"script": "src", "img": "src", "iframe": "src", "embed": "src", "source": "src",
            "audio": "src", "video": "src", "object": "data", "link": "href"}
_REMOTE = re.compile(r"^\s*(https?:)?//", re.IGNORECASE)
_CSS_URL = re.compile(r"""(?:url\(\s*['"]?|@import\s+['"])\s*((?:https?:)?//[^'")\s]+)""", re.IGNORECASE)
_JS_URL = re.compile(r"""['"]((?:https?:)?//[^'"\s]+\.(?:js|css|woff2?|ttf)[^'"\s]*)['"]""", re.IGNORECASE)


class _Loads(HTMLParser):
    def __init__(self):
        super().__init__()
        self.loads, self._in = [], None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        url = attrs.get(_LOADING.get(tag, ""))
        if url and _REMOTE.match(url):
            self.loads.append(f"<{tag}> {url}")
        if attrs.get("style"):
            self.loads.extend(_CSS_URL.findall(attrs["style"]))
        self._in = tag

    def handle_data(self, data):
        if self._in == "style":
            self.loads.extend(_CSS_URL.findall(data))
        elif self._in == "script":
            self.loads.extend(_JS_URL.findall(data))


def network_loads(html: str) -> list:
    """Return every URL the page would fetch from the network (scripts, styles, images, fonts)."""
    parser = _Loads()
    parser.feed(html)
    return parser.loads
