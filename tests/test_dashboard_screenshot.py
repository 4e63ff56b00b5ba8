"""asv_bench/dashboard_screenshot.py: the offline rewrite of asv's index.html and the default view (no browser)."""

from __future__ import annotations

import importlib.util
import json
import pathlib
from urllib.parse import unquote

import pytest

PATH = pathlib.Path(__file__).parents[1] / "asv_bench" / "dashboard_screenshot.py"


@pytest.fixture
def shot():
    spec = importlib.util.spec_from_file_location("dashboard_screenshot", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fake_site(tmp_path, shot):
    html = tmp_path / "html"
    html.mkdir()
    tags = []
    for name in shot.VENDOR:
        url = f"https://cdn.example.org/lib/1.0/{name}"
        if name.endswith(".css"):
            tags.append(f'<link rel="stylesheet" href="{url}" integrity="sha256-x" crossorigin="anonymous">')
        else:
            tags.append(f'<script src="{url}" integrity="sha256-y" onerror="js_load_failure()"></script>')
    tags.append('<script src="asv.js"></script>')
    (html / "index.html").write_text("<html><head>\n" + "\n".join(tags) + "\n</head></html>\n")
    modules = tmp_path / "node_modules"
    for name, source in shot.VENDOR.items():
        (modules / source).parent.mkdir(parents=True, exist_ok=True)
        (modules / source).write_text(f"/* {name} */")
    return html, modules


def test_vendor_index_points_every_cdn_tag_at_local_copies(tmp_path, shot):
    html, modules = _fake_site(tmp_path, shot)
    shot.vendor_index(html, modules)
    text = (html / "index.html").read_text()
    assert "https://" not in text and "integrity" not in text
    for name in shot.VENDOR:
        attr = "href" if name.endswith(".css") else "src"
        assert f'{attr}="_vendor/{name}"' in text
        assert (html / "_vendor" / name).read_text() == f"/* {name} */"
    assert '<script src="asv.js"></script>' in text  # local tags untouched


def test_vendor_index_refuses_an_unknown_layout(tmp_path, shot):
    html, modules = _fake_site(tmp_path, shot)
    index = html / "index.html"
    index.write_text(index.read_text().replace("jquery-3.3.1.min.js", "jquery-9.9.9.min.js"))
    with pytest.raises(SystemExit, match="jquery-3.3.1.min.js"):
        shot.vendor_index(html, modules)


def test_default_view_selects_numba_float64_and_every_family(tmp_path, shot):
    families = ["'gauss'", "'sorted'", "'huge-lam'"]
    index = {
        "benchmarks": {
            shot.BENCHMARK: {
                "params": [["'numba'", "'cuda'"], ["100", "1000"], families, ["'float32'", "'float64'"]],
                "param_names": ["backend", "d", "family", "dtype"],
            }
        }
    }
    (tmp_path / "index.json").write_text(json.dumps(index))
    view = shot.default_view(tmp_path)
    location, query = view.split("?")
    assert location == shot.BENCHMARK
    parts = [unquote(p) for p in query.split("&")]
    assert parts == ["p-backend='numba'", "p-dtype='float64'"] + [f"p-family={f}" for f in families] + [
        "x-axis=d",
        "y-axis-scale=log",
    ]
