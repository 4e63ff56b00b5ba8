"""The interactive examples of README.md (its ``>>>`` blocks) run as doctests, with their printed results."""

import doctest
import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def readme_examples() -> list[str]:
    """The fenced ``python`` blocks of README.md that hold ``>>>`` examples."""
    blocks = re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), flags=re.S | re.M)
    return [block for block in blocks if ">>>" in block]


def test_readme_has_examples():
    assert readme_examples(), "README.md lost its >>> examples (or their ```python fences)"


def test_readme_examples_give_the_printed_results():
    parser = doctest.DocTestParser()
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    report = []
    for k, block in enumerate(readme_examples()):
        test = parser.get_doctest(block, {}, f"README.md example {k}", str(README), 0)
        assert test.examples
        runner.run(test, out=report.append)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, "".join(report)
    assert result.attempted >= 10
