"""The findings policy and the TOML config file (reports.policy)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reports.policy import (
    KINDS,
    RESERVED_SECTIONS,
    Config,
    Policy,
    default_config_path,
    load_config,
)
from scanner.errors import UsageError
from scanner.models import Severity


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_follow_the_issue() -> None:
    policy = Policy()
    assert (policy.expiring_high_days, policy.expiring_critical_days) == (30, 7)
    assert policy.short_lived_fraction == pytest.approx(1 / 3)
    assert policy.max_leaf_validity_days is None  # the CA/B Forum limit at each notBefore
    assert policy.expiring_high_fraction is None
    assert (policy.min_rsa_bits, policy.min_ec_bits) == (2048, 256)
    assert all(policy.is_enabled(kind) for kind in KINDS)
    assert policy.severity_of("expired", Severity.CRITICAL) is Severity.CRITICAL
    assert len(set(KINDS)) == len(KINDS) == 31


def test_full_config_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [policy]
        expiring_high_days = 45
        expiring_critical_days = 10
        short_lived_fraction = 0.25
        max_leaf_validity_days = 200
        min_rsa_bits = 3072
        min_ec_bits = 384
        enabled = ["expired", "expiring", "hostname_mismatch", "long_validity"]
        disabled = ["long_validity"]
        [policy.severity]
        hostname_mismatch = "Medium"

        [trust]
        ca_bundles = ["private/root.pem", "/etc/certscan/other.pem"]
        mozilla_roots = false

        [serve]
        listen = "127.0.0.1:9400"
        [hooks.renew]
        command = ["renew.sh"]
        """,
    )
    config = load_config(path, env={})
    policy = config.policy
    assert config.path == path
    assert (policy.expiring_high_days, policy.expiring_critical_days) == (45, 10)
    assert policy.short_lived_fraction == 0.25
    assert (policy.max_leaf_validity_days, policy.min_rsa_bits, policy.min_ec_bits) == (
        200,
        3072,
        384,
    )
    assert policy.is_enabled("expired")
    assert not policy.is_enabled("long_validity")  # disabled wins
    assert not policy.is_enabled("weak_key")  # not in enabled
    assert policy.severity_of("hostname_mismatch", Severity.HIGH) is Severity.MEDIUM
    assert config.ca_bundles == (tmp_path / "private/root.pem", Path("/etc/certscan/other.pem"))
    assert config.mozilla_roots is False
    assert config.sections == {
        "serve": {"listen": "127.0.0.1:9400"},
        "hooks": {"renew": {"command": ["renew.sh"]}},
    }


def test_empty_file_is_all_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""), env={})
    assert config.policy == Policy()
    assert config.ca_bundles == ()
    assert config.mozilla_roots is True
    assert config.sections == {}


def test_every_reserved_section_is_accepted(tmp_path: Path) -> None:
    text = "\n".join(f"[{name}]\nx = 1" for name in RESERVED_SECTIONS)
    config = load_config(write(tmp_path, text), env={})
    assert set(config.sections) == set(RESERVED_SECTIONS)


# --- which file ------------------------------------------------------------------------------


def test_default_path_uses_xdg_config_home(tmp_path: Path) -> None:
    xdg = tmp_path / "xdg"
    assert default_config_path({"XDG_CONFIG_HOME": str(xdg)}) == xdg / "certscan/config.toml"
    home = {"HOME": str(tmp_path), "XDG_CONFIG_HOME": "relative/ignored"}
    assert default_config_path(home) == tmp_path / ".config/certscan/config.toml"


def test_missing_default_file_means_defaults(tmp_path: Path) -> None:
    assert load_config(None, env={"XDG_CONFIG_HOME": str(tmp_path)}) == Config()


def test_default_file_is_read(tmp_path: Path) -> None:
    (tmp_path / "certscan").mkdir()
    write(tmp_path / "certscan", "[policy]\nmin_rsa_bits = 4096\n")
    config = load_config(None, env={"XDG_CONFIG_HOME": str(tmp_path)})
    assert config.policy.min_rsa_bits == 4096
    assert config.path == tmp_path / "certscan" / "config.toml"


def test_precedence_option_then_environment_then_default(tmp_path: Path) -> None:
    (tmp_path / "certscan").mkdir()
    write(tmp_path / "certscan", "[policy]\nmin_rsa_bits = 1\n")
    from_env = write(tmp_path, "[policy]\nmin_rsa_bits = 2\n", "env.toml")
    option = write(tmp_path, "[policy]\nmin_rsa_bits = 3\n", "option.toml")
    env = {"XDG_CONFIG_HOME": str(tmp_path), "CERTSCAN_CONFIG": str(from_env)}
    assert load_config(option, env=env).policy.min_rsa_bits == 3
    assert load_config(None, env=env).policy.min_rsa_bits == 2
    assert load_config(None, env={**env, "CERTSCAN_CONFIG": ""}).policy.min_rsa_bits == 1


def test_missing_explicit_files_are_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(UsageError, match=r"nope\.toml: config file not found$"):
        load_config(missing, env={})
    with pytest.raises(UsageError, match=r"config file not found \(from CERTSCAN_CONFIG\)"):
        load_config(None, env={"CERTSCAN_CONFIG": str(missing)})


def test_unreadable_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read config file"):
        load_config(tmp_path, env={})  # a directory


# --- bad files: each gives its one-line message ------------------------------------------------

BAD = [
    (
        "[policy]\nexpiring_high_days = 'x'",
        "policy.expiring_high_days: expected a whole number of days, got 'x'",
    ),
    (
        "[policy]\nexpiring_high_days = 1.5",
        "policy.expiring_high_days: expected a whole number of days, got 1.5",
    ),
    (
        "[policy]\nexpiring_critical_days = true",
        "policy.expiring_critical_days: expected a whole number of days, got true",
    ),
    ("[policy]\nmin_rsa_bits = '2048'", "policy.min_rsa_bits: expected a whole number of bits"),
    ("[policy]\nmin_ec_bits = -1", "policy.min_ec_bits: must not be negative, got -1"),
    (
        "[policy]\nexpiring_high_days = -3",
        "policy.expiring_high_days: must not be negative, got -3",
    ),
    (
        "[policy]\nexpiring_critical_days = 40",
        "policy.expiring_critical_days: must be between 0 and expiring_high_days (30), got 40",
    ),
    (
        "[policy]\nmax_leaf_validity_days = 0",
        "policy.max_leaf_validity_days: must be at least 1, got 0",
    ),
    (
        "[policy]\nshort_lived_fraction = 'third'",
        "policy.short_lived_fraction: expected a number between 0 and 1, got 'third'",
    ),
    (
        "[policy]\nshort_lived_fraction = 1.5",
        "policy.short_lived_fraction: must be more than 0 and at most 1, got 1.5",
    ),
    (
        "[policy]\nshort_lived_fraction = 0",
        "policy.short_lived_fraction: must be more than 0 and at most 1, got 0.0",
    ),
    (
        "[policy]\nexpiring_hgih_days = 3",
        "policy.expiring_hgih_days: unknown key 'expiring_hgih_days'; "
        "did you mean 'expiring_high_days'?",
    ),
    ("[policy]\nenabled = 'expired'", "policy.enabled: expected a list of finding kinds"),
    ("[policy]\nenabled = [1]", "policy.enabled: expected a list of finding kinds, got [1]"),
    (
        "[policy]\ndisabled = ['expird']",
        "policy.disabled: unknown finding kind 'expird'; did you mean 'expired'?",
    ),
    ("[policy]\nseverity = 'high'", "policy.severity: expected a table, got 'high'"),
    (
        "[policy.severity]\nexpired = 'urgent'",
        "policy.severity.expired: unknown severity 'urgent' (expected one of info, low, medium, "
        "high, critical)",
    ),
    ("[policy.severity]\nexpired = 4", "policy.severity.expired: expected a severity name, got 4"),
    (
        '[policy.severity]\n"no such\\nkind" = "low"',
        "policy.severity.\"no such\\nkind\": unknown finding kind 'no such\\nkind'",
    ),
    ("policy = 3", "policy: expected a table, got 3"),
    ("[trust]\nca_bundles = 'root.pem'", "trust.ca_bundles: expected a list of PEM file paths"),
    ("[trust]\nca_bundles = ['']", "trust.ca_bundles: expected a list of PEM file paths"),
    ("[trust]\nmozilla_roots = 'no'", "trust.mozilla_roots: expected true or false, got 'no'"),
    ("[trust]\nroots = []", "trust.roots: unknown key 'roots'"),
    ("[polcy]\nx = 1", "polcy: unknown section 'polcy'; did you mean 'policy'?"),
    ("frobnicate = 1", "frobnicate: unknown section 'frobnicate' (known: policy, trust, sweep"),
    ("serve = [1]", "serve: expected a table, got [1]"),
    ("[policy\n", "invalid TOML: "),
    ("a = 1\na = 2", "invalid TOML: "),
]


@pytest.mark.parametrize(("text", "message"), BAD, ids=[m.split(":")[0] for _, m in BAD])
def test_bad_config_is_a_one_line_usage_error(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(UsageError) as info:
        load_config(path, env={})
    text = str(info.value)
    assert text.startswith(f"{path}: ")
    assert message in text
    assert "\n" not in text


def test_invalid_utf8_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b"[policy]\n# \xff\n")
    with pytest.raises(UsageError, match="not UTF-8 text"):
        load_config(path, env={})


def test_long_values_are_shortened_in_messages(tmp_path: Path) -> None:
    path = write(tmp_path, f"[policy]\nmin_rsa_bits = '{'x' * 500}'")
    with pytest.raises(UsageError) as info:
        load_config(path, env={})
    assert len(str(info.value)) < len(str(path)) + 150


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"expiring_critical_days": 31}, "expiring_critical_days"),
        ({"short_lived_fraction": 0.0}, "short_lived_fraction"),
        ({"disabled": frozenset({"nope"})}, "disabled: unknown finding kind 'nope'"),
        ({"severities": {"nope": Severity.LOW}}, "severity: unknown finding kind 'nope'"),
    ],
)
def test_policy_validates_itself(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Policy(**kwargs)  # type: ignore[arg-type]


def test_policy_severities_are_read_only() -> None:
    source = {"expired": Severity.LOW}
    policy = Policy(severities=source)
    source["expired"] = Severity.HIGH
    assert policy.severity_of("expired", Severity.CRITICAL) is Severity.LOW
    with pytest.raises(TypeError):
        policy.severities["expired"] = Severity.INFO  # type: ignore[index]
