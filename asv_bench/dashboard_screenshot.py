"""Screenshot of the published asv dashboard in headless Chromium, offline.

The dashboard that ``asv publish`` writes loads jQuery, flot, bootstrap, stupidtable and
blueimp-md5 from public CDNs. This script copies local files of those libraries (from a
``node_modules`` folder, e.g. after ``npm install jquery@3.3.1 flot@0.8.3 flot-orderbars@1.0.0
stupid-table-plugin blueimp-md5@2.19.0 bootstrap@3.1.1``) into ``.asv/html/_vendor/``, points
``index.html`` at them, serves the folder on localhost and has Chromium (Debian's
``/usr/bin/chromium``) take a screenshot of one graph.

Run from ``asv_bench/`` after ``asv run`` and ``asv publish``::

    python dashboard_screenshot.py --node-modules /path/to/node_modules \\
        --out ../docs/_static/asv_dashboard.png

The default view is the graph of ``bench_prox.Prox.time_prox`` for the numba backend in
float64, every input family, with ``d`` on the x-axis and a log y-axis.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import re
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from urllib.parse import quote

#: CDN script/link URL fragment -> file in node_modules
VENDOR = {
    "jquery-3.3.1.min.js": "jquery/dist/jquery.min.js",
    "jquery.flot.min.js": "flot/jquery.flot.js",
    "jquery.flot.time.min.js": "flot/jquery.flot.time.js",
    "jquery.flot.selection.min.js": "flot/jquery.flot.selection.js",
    "jquery.flot.categories.min.js": "flot/jquery.flot.categories.js",
    "jquery.flot.orderBars.js": "flot-orderbars/js/jquery.flot.orderBars.js",
    "stupidtable.min.js": "stupid-table-plugin/stupidtable.min.js",
    "md5.min.js": "blueimp-md5/js/md5.min.js",
    "bootstrap.min.js": "bootstrap/dist/js/bootstrap.min.js",
    "bootstrap.min.css": "bootstrap/dist/css/bootstrap.min.css",
}

BENCHMARK = "bench_prox.Prox.time_prox"


def default_view(html_dir: Path) -> str:
    """``BENCHMARK`` for numba in float64, every family of the published results, d on x, log y."""
    info = json.loads((html_dir / "index.json").read_text())["benchmarks"][BENCHMARK]
    families = info["params"][info["param_names"].index("family")]
    selection = ["p-backend='numba'", "p-dtype='float64'"] + [f"p-family={f}" for f in families]
    query = "&".join(quote(s, safe="=-") for s in selection + ["x-axis=d", "y-axis-scale=log"])
    return f"{BENCHMARK}?{query}"


def vendor_index(html_dir: Path, node_modules: Path) -> None:
    """Copy the libraries into ``html_dir/_vendor`` and rewrite the CDN tags of ``index.html``."""
    vendor = html_dir / "_vendor"
    vendor.mkdir(exist_ok=True)
    index = html_dir / "index.html"
    text = index.read_text()
    for name, source in VENDOR.items():
        shutil.copyfile(node_modules / source, vendor / name)
        pattern = r'(src|href)="https://[^"]*/' + re.escape(name) + r'"[^>]*?(/?>)'
        text, count = re.subn(pattern, rf'\1="_vendor/{name}"\2', text)
        if count != 1:
            raise SystemExit(f"index.html: expected one tag loading {name}, found {count}")
    index.write_text(text)


def screenshot(html_dir: Path, view: str, out: Path, size: str) -> None:
    """Serve ``html_dir`` on a free localhost port and save Chromium's screenshot of ``#view``."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(html_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/index.html#{view}"
    try:
        with tempfile.TemporaryDirectory() as profile:
            subprocess.run(
                [
                    "chromium",
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    f"--user-data-dir={profile}",
                    f"--window-size={size}",
                    "--virtual-time-budget=15000",  # let the graphs' JSON load and render
                    f"--screenshot={out.resolve()}",
                    url,
                ],
                check=True,
                timeout=120,
            )
    finally:
        server.shutdown()
    print(f"wrote {out} from {url}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--node-modules", type=Path, required=True, help="folder with the npm packages")
    parser.add_argument("--html", type=Path, default=Path(".asv/html"), help="asv's published HTML")
    parser.add_argument("--view", default=None, help="dashboard location after '#' (default: see module doc)")
    parser.add_argument("--size", default="1400,900", help="window size WIDTH,HEIGHT")
    parser.add_argument("--out", type=Path, default=Path("asv_dashboard.png"))
    args = parser.parse_args(argv)
    vendor_index(args.html, args.node_modules)
    screenshot(args.html, args.view or default_view(args.html), args.out, args.size)


if __name__ == "__main__":
    main()
