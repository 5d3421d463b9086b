"""The code's layers: pure rules import nothing of ours nor a framework; models, jobs/ and live/ know no Flask app."""

import ast
from pathlib import Path

import pytest

from conftest import ROOT

OURS = ("config", "models", "selection", "rotation", "visitor_state", "jobs", "live", "webapp")


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, at its top or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def top(name: str) -> str:
    return name.split(".")[0]


@pytest.mark.parametrize("module", ["selection.py", "rotation.py", "jobs/parsing.py"])
def test_layers_pure_rules_import_nothing_of_ours_nor_a_framework(module):
    found = {top(n) for n in imported_modules(ROOT / module)}
    assert not found & {*OURS, "flask", "peewee", "redis", "rq", "boto3"} - {module.split("/")[0].removesuffix(".py")}


@pytest.mark.parametrize("path", sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "live").glob("*.py"))
                         + sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "jobs").glob("*.py"))
                         + ["models.py", "dashboard_queries.py"])
def test_layers_models_jobs_and_live_import_neither_webapp_nor_flask(path):
    found = {top(n) for n in imported_modules(ROOT / path)}
    assert not found & {"webapp", "flask", "flask_session"}, f"{path} imports {sorted(found & {'webapp', 'flask', 'flask_session'})}"


def test_layers_models_imports_nothing_of_jobs():
    """The tables know no job: jobs/ build on models.py, not the other way round."""
    found = {top(n) for n in imported_modules(ROOT / "models.py")}
    assert "jobs" not in found
