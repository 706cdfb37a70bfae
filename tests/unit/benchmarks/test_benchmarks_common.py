"""benchmarks/common.py: a result section replaces only itself in RESULTS.md."""
from __future__ import annotations

from benchmarks.common import replace_section, write_result


def test_write_result_replaces_only_its_section(tmp_path):
    path = tmp_path / "RESULTS.md"
    write_result("alpha", "python a.py", "first alpha", path)
    write_result("beta", "python b.py", "only beta", path)
    write_result("alpha", "python a.py --x", "second alpha", path)
    text = path.read_text()
    assert text.startswith("# Benchmark results")
    assert text.count("## alpha\n") == 1 and "first alpha" not in text and "second alpha" in text
    assert "Command: `python a.py --x`" in text and "Machine: " in text
    assert "only beta" in text and text.index("## alpha") < text.index("## beta")


def test_replace_section_appends_and_keeps_neighbours():
    text = "# T\n\n## one\n\nx\n\n## two\n\ny\n"
    out = replace_section(text, "one", "## one\n\nnew\n")
    assert out == "# T\n\n## one\n\nnew\n\n## two\n\ny\n"
    out = replace_section(out, "three", "## three\n\nz\n")
    assert out.endswith("## two\n\ny\n\n## three\n\nz\n")
    # a section name that is a prefix of another is not confused with it
    out = replace_section("## step\n\na\n\n## step (--quick)\n\nb\n", "step", "## step\n\nA\n")
    assert out == "## step\n\nA\n\n## step (--quick)\n\nb\n"
