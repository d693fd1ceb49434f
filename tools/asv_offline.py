"""Make asv's published html report self-contained: no file is loaded from the network.

``asv publish`` writes ``.asv/html/index.html``, which loads jQuery, flot, stupidtable,
blueimp-md5 and bootstrap from public CDNs; on a machine that cannot reach them the
report shows asv's error page ("Can not determine continental origin of swallow").
This script takes the same libraries from the npm registry (``npm pack``, which these
machines reach through their npm configuration), keeps the packages in a cache folder
(``.asv/vendor-cache`` by default, so it needs the registry once per machine), copies
the files into ``<html>/vendor/`` and points every ``<script src>`` / ``<link href>``
at them (dropping the ``integrity``/``crossorigin`` attributes, which a ``file://`` page
cannot satisfy).  Afterwards it checks that no html file references an external URL,
and exits with status 1 naming the reference if one does.

Run it after every ``asv publish``::

    asv publish && python tools/asv_offline.py && asv preview   # any static server will do
    python tools/asv_offline.py --check                 # only check, change nothing

An external URL this script does not know (a newer asv) is one line on stderr and exit
status 2: add it to :data:`LIBRARIES`.  Differences from the CDN files: flot 0.8.3 from npm
is not minified (same code), and npm has stupidtable only as ``stupid-table-plugin`` 1.1.3
(the CDN serves 1.0.1; same API, sorting bug fixes).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Callable

#: CDN URL (as asv 0.6's index.html writes it) -> (npm package spec, file inside the package, local path under vendor/).
LIBRARIES: dict[str, tuple[str, str, str]] = {
    "https://code.jquery.com/jquery-3.3.1.min.js": ("jquery@3.3.1", "dist/jquery.min.js", "jquery.min.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.min.js": (
        "flot@0.8.3",
        "jquery.flot.js",
        "jquery.flot.js",
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.time.min.js": (
        "flot@0.8.3",
        "jquery.flot.time.js",
        "jquery.flot.time.js",
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.selection.min.js": (
        "flot@0.8.3",
        "jquery.flot.selection.js",
        "jquery.flot.selection.js",
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.categories.min.js": (
        "flot@0.8.3",
        "jquery.flot.categories.js",
        "jquery.flot.categories.js",
    ),
    "https://cdn.jsdelivr.net/npm/flot-orderbars@1.0.0/js/jquery.flot.orderBars.js": (
        "flot-orderbars@1.0.0",
        "js/jquery.flot.orderBars.js",
        "jquery.flot.orderBars.js",
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/stupidtable/1.0.1/stupidtable.min.js": (
        "stupid-table-plugin@1.1.3",
        "stupidtable.min.js",
        "stupidtable.min.js",
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/blueimp-md5/2.19.0/js/md5.min.js": (
        "blueimp-md5@2.19.0",
        "js/md5.min.js",
        "md5.min.js",
    ),
    "https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/js/bootstrap.min.js": (
        "bootstrap@3.1.1",
        "dist/js/bootstrap.min.js",
        "bootstrap/js/bootstrap.min.js",
    ),
    "https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/css/bootstrap.min.css": (
        "bootstrap@3.1.1",
        "dist/css/bootstrap.min.css",
        "bootstrap/css/bootstrap.min.css",
    ),
}

#: Files a vendored file needs beside it: bootstrap.min.css loads ../fonts/glyphicons-halflings-regular.*.
EXTRAS: dict[str, list[tuple[str, str]]] = {
    "bootstrap@3.1.1": [
        (f"dist/fonts/glyphicons-halflings-regular.{ext}", f"bootstrap/fonts/glyphicons-halflings-regular.{ext}")
        for ext in ("eot", "svg", "ttf", "woff")
    ],
}

#: Links that are navigation, not resources: rewritten to plain text targets (the report
#: stays usable offline and the check stays simple: no external URL at all).
LINKS = {"https://github.com/airspeed-velocity/asv/": "#"}

_ATTR = re.compile(r"""\b(src|href)\s*=\s*(["'])(.*?)\2""", re.IGNORECASE)
_TAG = re.compile(r"<(script|link|a|img)\b[^>]*>", re.IGNORECASE | re.DOTALL)
_DROP = re.compile(r"""\s+(integrity|crossorigin|referrerpolicy)(\s*=\s*(["']).*?\3)?""", re.IGNORECASE)
_CSS_URL = re.compile(r"""url\(\s*(["']?)(.*?)\1\s*\)""", re.IGNORECASE)


class UnknownURL(Exception):
    """An external reference this script has no local copy for."""


def is_external(url: str) -> bool:
    """True for a reference a browser would fetch from another host (http(s), protocol-relative, ftp)."""
    return bool(re.match(r"^\s*([a-z][a-z0-9+.-]*:)?//", url, re.IGNORECASE)) and not url.strip().lower().startswith(
        "file:"
    )


def external_references(root: str | os.PathLike) -> list[str]:
    """Every external URL an html file under ``root`` loads or links (``src=``, ``href=``) and every
    ``url(...)`` in a css file under it, as ``"file: url"`` strings; empty when the report is self-contained."""
    found = []
    root = Path(root)
    for path in sorted(root.rglob("*.html")):
        for tag in _TAG.finditer(path.read_text(encoding="utf-8", errors="replace")):
            for _, _, url in _ATTR.findall(tag.group(0)):
                if is_external(url):
                    found.append(f"{path.relative_to(root)}: {url}")
    for path in sorted(root.rglob("*.css")):
        for _, url in _CSS_URL.findall(path.read_text(encoding="utf-8", errors="replace")):
            if is_external(url):
                found.append(f"{path.relative_to(root)}: {url}")
    return found


def npm_fetch(spec: str, cache: Path) -> Path:
    """The tarball of ``spec`` (``name@version``) in ``cache``, downloaded with ``npm pack`` if missing."""
    name, version = spec.rsplit("@", 1)
    tarball = cache / f"{name.replace('/', '-').lstrip('@')}-{version}.tgz"
    if not tarball.exists():
        cache.mkdir(parents=True, exist_ok=True)
        if shutil.which("npm") is None:
            raise UnknownURL(f"npm is needed to download {spec} (or put {tarball.name} in {cache})")
        done = subprocess.run(
            ["npm", "pack", spec, "--pack-destination", str(cache)], capture_output=True, text=True, timeout=300
        )
        if done.returncode != 0 or not tarball.exists():
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise UnknownURL(f"npm pack {spec} failed: {last}")
    return tarball


def vendor(html_dir: Path, fetch: Callable[[str], Path]) -> list[str]:
    """Copy every library the report's html loads into ``html_dir/vendor`` and point the html at it.

    ``fetch(spec)`` returns the path of an npm tarball (``package/...`` members).  Returns the
    rewritten references.  Raises :class:`UnknownURL` for an external resource not in :data:`LIBRARIES`.
    """
    pages = sorted(html_dir.rglob("*.html"))
    wanted: dict[str, tuple[str, str, str]] = {}
    for page in pages:
        for tag in _TAG.finditer(page.read_text(encoding="utf-8")):
            for _, _, url in _ATTR.findall(tag.group(0)):
                if not is_external(url) or url in LINKS:
                    continue
                if url not in LIBRARIES:
                    raise UnknownURL(
                        f"{page.relative_to(html_dir)} loads {url}, which tools/asv_offline.py does not know"
                    )
                wanted[url] = LIBRARIES[url]
    for spec in sorted({spec for spec, _, _ in wanted.values()}):
        members = [(member, local) for spec2, member, local in wanted.values() if spec2 == spec] + EXTRAS.get(spec, [])
        with tarfile.open(fetch(spec)) as tar:
            for member, local in members:
                target = html_dir / "vendor" / local
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(f"package/{member}")
                if source is None:
                    raise UnknownURL(f"{spec} has no file {member}")
                target.write_bytes(source.read())
    rewritten = []
    for page in pages:
        text = page.read_text(encoding="utf-8")
        prefix = os.path.relpath(html_dir / "vendor", page.parent).replace(os.sep, "/")

        def fix(tag: re.Match) -> str:
            out = tag.group(0)
            for _, _quote, url in _ATTR.findall(out):
                if url in LIBRARIES:
                    out = out.replace(url, f"{prefix}/{LIBRARIES[url][2]}")
                    out = _DROP.sub("", out)
                    rewritten.append(url)
                elif url in LINKS:
                    out = out.replace(url, LINKS[url])
                    rewritten.append(url)
            return out

        page.write_text(_TAG.sub(fix, text), encoding="utf-8")
    return rewritten


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--html", default=".asv/html", help="asv's html_dir (default: .asv/html)")
    parser.add_argument(
        "--cache", default=".asv/vendor-cache", help="where the npm tarballs are kept (default: .asv/vendor-cache)"
    )
    parser.add_argument("--check", action="store_true", help="only check for external references; change nothing")
    args = parser.parse_args(argv)
    html_dir = Path(args.html)
    if not (html_dir / "index.html").is_file():
        print(f"asv_offline: --html: no index.html in {html_dir} (run `asv publish` first)", file=sys.stderr)
        return 2
    if not args.check:
        try:
            n = len(vendor(html_dir, lambda spec: npm_fetch(spec, Path(args.cache))))
        except UnknownURL as exc:
            print(f"asv_offline: {exc}", file=sys.stderr)
            return 2
        print(f"asv_offline: {n} references in {html_dir} now point at {html_dir / 'vendor'}")
    left = external_references(html_dir)
    for ref in left:
        print(f"asv_offline: external reference left: {ref}", file=sys.stderr)
    if not left:
        print(f"asv_offline: {html_dir} references no external URL; serve it with `asv preview`")
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main())
