"""README.md starts with the two set-up commands, and .ci/run runs exactly the README's test command."""
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci_command = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert "python -m pytest" in ci_command
    assert ci_command in readme, f".ci/run's command is not in README.md: {ci_command}"


def test_readme_starts_with_the_train_and_test_commands():
    blocks = (ROOT / "README.md").read_text().split("```")
    first = blocks[1]  # the first fenced block
    assert "python -m minunet.train" in first and "python -m pytest" in first


def test_readme_python_example_runs():
    blocks = (ROOT / "README.md").read_text().split("```python\n")[1:]
    assert blocks, "README.md has a python example"
    for block in blocks:
        exec(compile(block.split("```")[0], "README.md", "exec"), {})


def test_readmes_isbi_results_are_the_experiments_own_lines():
    """README quotes the ISBI experiment's table: each quoted line must be in the results file it names, as the
    experiment's code printed it (no figure typed in by hand)."""
    import re
    readme = (ROOT / "README.md").read_text()
    quotes = re.findall(r"<!-- quoted from (benchmarks/results/\S+\.md) -->\n(.*?)\n<!-- end of quote -->", readme,
                        re.S)
    assert quotes, "README.md quotes no results file between <!-- quoted from ... --> and <!-- end of quote -->"
    for path, text in quotes:
        source = (ROOT / path).read_text().splitlines()
        for line in filter(None, text.splitlines()):
            assert line in source, f"README.md quotes a line that {path} does not hold: {line}"
