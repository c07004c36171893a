"""The shipped alerting rules: promtool accepts them, their unit tests pass (and fail when a rule
changes), and every metric they use is one certscan exports."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from exporters.prometheus import build_metrics
from scanner.inventory.metrics import MetricsSnapshot
from tests.conftest import require_tool

RULES_DIR = Path(__file__).resolve().parents[2] / "exporters" / "rules"
RULES = RULES_DIR / "certscan.rules.yml"
RULES_TEST = RULES_DIR / "certscan.rules.test.yml"


def promtool(*args: str | Path, cwd: Path = RULES_DIR) -> subprocess.CompletedProcess[str]:
    binary = require_tool("promtool")
    return subprocess.run(
        [binary, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_promtool_checks_the_rules() -> None:
    result = promtool("check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 9 rules found" in result.stdout


def test_promtool_rule_unit_tests_pass() -> None:
    result = promtool("test", "rules", RULES_TEST)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_rule_unit_tests_notice_a_changed_threshold(tmp_path: Path) -> None:
    shutil.copy(RULES_TEST, tmp_path)
    text = RULES.read_text(encoding="utf-8")
    # Back to a fixed 30-day window: the 6-day and 47-day certificates would warn too early.
    old = "6 * 3600, 30 * 86400"
    assert text.count(old) == 1
    (tmp_path / RULES.name).write_text(text.replace(old, "30 * 86400, 30 * 86400"), "utf-8")
    result = promtool("test", "rules", RULES_TEST.name, cwd=tmp_path)
    assert result.returncode != 0
    assert "CertscanCertificateExpiringSoon" in result.stdout + result.stderr


def test_rules_use_only_exported_metrics() -> None:
    used = set(re.findall(r"\bcertscan_[a-z_]+\b", RULES.read_text(encoding="utf-8")))
    empty = MetricsSnapshot(endpoints=[], problems=[], findings=[], scans=[])
    exported = {family.name for family in build_metrics(empty)}
    assert used, "no certscan metric in the rules"
    assert used <= exported, used - exported


def test_rule_unit_tests_notice_a_changed_stuck_window(tmp_path: Path) -> None:
    shutil.copy(RULES_TEST, tmp_path)
    text = RULES.read_text(encoding="utf-8")
    assert text.count("changes(certscan_scan_progress_ratio[1h]) == 0") == 1
    changed = text.replace("progress_ratio[1h]", "progress_ratio[10m]")
    (tmp_path / RULES.name).write_text(changed, "utf-8")
    result = promtool("test", "rules", RULES_TEST.name, cwd=tmp_path)
    assert result.returncode != 0
    assert "CertscanScanStuck" in result.stdout + result.stderr
