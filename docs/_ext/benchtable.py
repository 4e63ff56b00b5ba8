"""``.. bench-table:: PATH``: a table of a benchmark JSON file from ``asv_bench/``.

Three formats are understood: ``asv_bench/bench_numba.py --json PATH`` (keys ``machine``,
``repeat``, ``results``), ``asv_bench/bench_cuda.py PATH`` (keys ``meta``, ``rows``, optionally
``variants``) and ``wsprox compare --json PATH`` (``schema`` ``wsprox-compare/...``: one row per
family and size, one column per solver).

The path is relative to the page. The page is rebuilt when the file changes. When the file
does not exist the directive says so in the page (no warning, so ``-W`` builds still pass).
"""

from __future__ import annotations

import json
from pathlib import Path

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective


def _seconds(s: float) -> str:
    if s >= 1:
        return f"{s:.2f} s"
    return f"{s * 1e3:.3g} ms"


def _engines(results) -> str:
    """A sentence naming the numba backend's sort engine by d, from compare's ``details`` (schema 3); '' without."""
    engines = {}
    for r in results:
        engine = (r.get("details") or {}).get("sort_engine")
        if engine is not None:
            engines.setdefault(engine, set()).add(r["d"])
    if not engines:
        return ""
    parts = [f"{name} at d = {', '.join(map(str, sorted(ds)))}" for name, ds in sorted(engines.items())]
    return " The numba backend sorted with " + "; ".join(parts) + "."


class BenchTable(SphinxDirective):
    required_arguments = 1
    has_content = False

    def run(self):
        rel = self.arguments[0]
        src_dir = Path(self.env.doc2path(self.env.docname)).parent
        path = (src_dir / rel).resolve()
        self.env.note_dependency(str(path))
        if not path.exists():
            para = nodes.paragraph(text=f"No results yet: {rel} does not exist.")
            return [para]
        data = json.loads(path.read_text())
        if str(data.get("schema", "")).startswith("wsprox-compare/"):
            lines = self._compare_lines(data)
        elif "rows" in data:
            lines = self._cuda_lines(data)
        else:
            lines = self._numba_lines(data)
        container = nodes.container()
        self.state.nested_parse(StringList(lines, source=str(path)), self.content_offset, container)
        return container.children

    @staticmethod
    def _numba_lines(data):
        lines = [
            f"Machine (as recorded in the file): ``{data.get('machine', 'not recorded')}``; "
            f"medians of {data.get('repeat', '?')} runs after a warm-up call"
            + (f"; sort engine by row class: ``{data['sort']}``." if "sort" in data else "."),
            "",
            ".. list-table::",
            "   :header-rows: 1",
            "",
            "   * - case",
            "     - baseline",
            "     - wsprox.prox",
            "     - baseline time",
            "     - ratio",
            "     - goal",
            "     - met",
        ]
        for r in data["results"]:
            lines += [
                f"   * - {r['case']}",
                f"     - {r['baseline']}",
                f"     - {_seconds(r['prox_s'])}",
                f"     - {_seconds(r['baseline_s'])}",
                f"     - {r['ratio']:.2f}",
                f"     - {r['goal']}",
                f"     - {'yes' if r['met'] else '**no**'}",
            ]
        return lines

    @staticmethod
    def _cuda_lines(data):
        meta = data.get("meta", {})

        def ms(v, spec=".3f"):
            return "-" if v is None else format(v, spec)

        lines = [
            f"Device (as recorded in the file): ``{meta.get('device', 'not recorded')}``; "
            f"Python {meta.get('python', '?')}, numpy {meta.get('numpy', '?')}; medians of "
            f"{meta.get('repeat', '?')} runs after {meta.get('warmup', '?')} warm-up runs.",
            "",
        ]
        if meta.get("dry_run"):
            lines += ["**Dry run** (tiny sizes, possibly the CUDA simulator): not a measurement.", ""]
        lines += [
            ".. list-table::",
            "   :header-rows: 1",
            "",
            "   * - case",
            "     - d",
            "     - torch.sort [ms]",
            "     - wsprox.prox [ms]",
            "     - ratio",
            "     - cuda-imminent [ms]",
            "     - extra memory [B/element]",
        ]
        for r in data["rows"]:
            imminent = (
                ms(r.get("imminent_ms"), ".1f") if r.get("imminent_ms") is not None else (r.get("imminent_note") or "-")
            )
            lines += [
                f"   * - {r['case']}",
                f"     - {r['d']}",
                f"     - {ms(r.get('sort_ms'))}",
                f"     - {ms(r.get('prox_ms'))}",
                f"     - {ms(r.get('ratio'), '.2f')}",
                f"     - {imminent}",
                f"     - {ms(r.get('peak_extra_bytes_per_element'), '.1f')}",
            ]
        variants = data.get("variants") or []
        if variants:
            names = list(variants[0]["ms"])
            lines += [
                "",
                "Design variants (Gaussian weights, lam = 1e-2; unsort / tile stage), wsprox.prox [ms]:",
                "",
                ".. list-table::",
                "   :header-rows: 1",
                "",
                "   * - d",
            ]
            lines += [f"     - {name}" for name in names]
            for v in variants:
                lines += [f"   * - {v['d']}"] + [f"     - {ms(v['ms'].get(name))}" for name in names]
        return lines

    @staticmethod
    def _compare_lines(data):
        from wsprox._compare import format_time

        settings, machine = data["settings"], data.get("machine", {})
        results = data["results"]
        labels = [r["label"] for r in data["runners"] if any(x["label"] == r["label"] for x in results)]
        families = list(dict.fromkeys(r["family"] for r in results))
        cases = sorted({(r["family"], r["d"]) for r in results}, key=lambda c: (families.index(c[0]), c[1]))
        by_case = {(r["family"], r["d"], r["label"]): r for r in results}
        checked = [r for r in results if r["certificate"] in ("ok", "FAIL")]
        passed = sum(r["certificate"] == "ok" for r in checked)
        gpu = machine.get("gpu") or "none"
        lines = [
            f"Machine (as recorded in the file): ``{machine.get('cpu', 'not recorded')}``, "
            f"{machine.get('usable_cores', '?')} usable cores, GPU: {gpu}; wsprox "
            f"{data.get('wsprox_version', '?')}, {settings['dtype']}, lam = {settings['lam']}, median of up to "
            f"{settings['repeat']} timed calls, timeout {settings['timeout_s']:g} s. Each cell: median time "
            f"(ratio to the sort of the same array). {passed} of {len(checked)} checked results passed the "
            "optimality certificate; the last column is the largest difference to the reference over all "
            "solvers of the row." + _engines(results),
            "",
            ".. list-table::",
            "   :header-rows: 1",
            "",
            "   * - family",
            "     - d",
        ]
        lines += [f"     - {label}" for label in labels]
        lines += ["     - max \\|x - ref\\|"]

        def cell(r):
            if r is None:
                return "-"
            if r["status"] == "timeout":
                return f"> {format_time(settings['timeout_s'])}"
            if r["status"] != "ok" or r["median_s"] is None:
                return r["status"]
            text = format_time(r["median_s"])
            if r["ratio_to_sort"] is not None and r["kind"] != "floor":
                text += f" ({r['ratio_to_sort']:.2f})"
            if r["certificate"] == "FAIL":
                text += " **certificate failed**"
            return text

        for family, d in cases:
            row = [by_case.get((family, d, label)) for label in labels]
            diffs = [r["max_abs_diff"] for r in row if r is not None and r["max_abs_diff"] is not None]
            lines += [f"   * - {family}", f"     - {d}"] + [f"     - {cell(r)}" for r in row]
            lines += [f"     - {max(diffs):.1e}" if diffs else "     - -"]
        return lines


def setup(app):
    app.add_directive("bench-table", BenchTable)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
