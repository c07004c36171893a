"""The ``[serve]`` and ``[jobs.NAME]`` config sections: valid ones read, mistakes reported in one
line naming the file and the dotted key."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporters.serve.config import (
    DEFAULT_SHARD_SIZE,
    ServeSettings,
    parse_listen,
    serve_settings,
)
from exporters.serve.scheduler import Cron, Interval
from reports.policy import load_config
from scanner.errors import UsageError


def settings(tmp_path: Path, text: str) -> ServeSettings:
    path = tmp_path / "c.toml"
    path.write_text(text, encoding="utf-8")
    return serve_settings(load_config(path, env={}))


def test_full_config(tmp_path: Path) -> None:
    (tmp_path / "more.txt").write_text("127.0.0.2\n# comment\n127.0.0.3\n", encoding="utf-8")
    got = settings(
        tmp_path,
        """
[serve]
listen = "127.0.0.1:0"
token = "0123456789abcdef"
[jobs.a]
targets = ["127.0.0.1"]
targets_file = "more.txt"
ports = "443,2525/smtp"
every = "6h"
deadline = 2
probe_protocols = true
[jobs.b]
targets = "127.0.0.9"
cron = "*/10 * * * 1-5"
""",
    )
    assert (got.listen, got.token) == ("127.0.0.1:0", "0123456789abcdef")
    a, b = got.jobs["a"], got.jobs["b"]
    assert a.specs == ("127.0.0.1", "127.0.0.2", "127.0.0.3")
    assert a.ports == ((443, None), (2525, "smtp"))
    assert isinstance(a.schedule, Interval)
    assert a.schedule.seconds == 6 * 3600
    assert (a.limits.target_deadline, a.limits.probe_protocols) == (2.0, True)
    assert isinstance(b.schedule, Cron)
    assert b.specs == ("127.0.0.9",)


def test_named_tokens(tmp_path: Path) -> None:
    got = settings(
        tmp_path, '[serve.tokens]\nalice = "0123456789abcdef"\nci-bot = "fedcba9876543210"\n'
    )
    assert got.tokens == {"alice": "0123456789abcdef", "ci-bot": "fedcba9876543210"}


def test_no_sections_no_jobs(tmp_path: Path) -> None:
    got = settings(tmp_path, "")
    assert got.jobs == {}


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[serve]\nport = 1\n", "serve.port"),
        ('[serve]\nlisten = "nowhere"\n', "serve.listen"),
        ('[serve]\ntoken = "short"\n', "serve.token"),
        ("[serve]\ntoken = 5\n", "serve.token"),
        ('[serve.tokens]\nalice = "short"\n', "serve.tokens.alice"),
        ('[serve.tokens]\n"a b" = "0123456789abcdef"\n', "serve.tokens"),
        ('[serve.tokens]\na = "0123456789abcdef"\nb = "0123456789abcdef"\n', "serve.tokens.b"),
        ('[jobs.x]\nevery = "1h"\n', "jobs.x.targets"),
        ('[jobs.x]\ntargets = ["127.0.0.1"]\n', "jobs.x: give exactly one"),
        ('[jobs.x]\ntargets = ["127.0.0.1"]\nevery = "1h"\ncron = "* * * * *"\n', "jobs.x.every"),
        ('[jobs.x]\ntargets = ["127.0.0.1"]\ncron = "99 * * * *"\n', "jobs.x.cron"),
        ('[jobs.x]\ntargets = [1]\nevery = "1h"\n', "jobs.x.targets"),
        ('[jobs.x]\ntargets = ["a"]\nevery = "1h"\nports = "0"\n', "jobs.x"),
        ('[jobs.x]\ntargets = ["a"]\nevery = "1h"\nstarttls = "nope"\n', "jobs.x"),
        ('[jobs.x]\ntargets = ["a"]\nevery = "1h"\ndeadline = 0\n', "jobs.x.deadline"),
        ('[jobs.x]\ntargets = ["a"]\nevery = "1h"\nconcurrency = true\n', "jobs.x.concurrency"),
        ('[jobs.x]\ntargets = ["a"]\nevery = "1h"\ncolour = "red"\n', "jobs.x.colour"),
        ('[jobs.x]\ntargets_file = "missing.txt"\nevery = "1h"\n', "missing.txt"),
        ('[jobs."a b"]\ntargets = ["a"]\nevery = "1h"\n', "jobs.a b"),
        ("[jobs]\nx = 1\n", "jobs.x"),
        ('[jobs.x]\ntargets = ["a"]\nevery = "1h"\nzone = "DMZ!"\n', "jobs.x.zone"),
        ('[jobs.x]\ntargets = ["a"]\nevery = "1h"\nzone = 3\n', "jobs.x.zone"),
        ('[jobs.x]\ntargets = ["a"]\nevery = "1h"\nshard_size = "/24"\n', "jobs.x.shard_size"),
        ('[jobs.x]\ntargets = ["a"]\nevery = "1h"\nbroker = "amqp://h//"\n', "jobs.x.broker"),
        (
            '[jobs.x]\ntargets = ["a"]\nevery = "1h"\nzone = "dmz"\nshard_size = "/7"\n',
            "jobs.x.shard_size",
        ),
        (
            '[jobs.x]\ntargets = ["a"]\nevery = "1h"\nzone = "dmz"\nshard_size = 0\n',
            "jobs.x.shard_size",
        ),
        (
            '[jobs.x]\ntargets = ["a"]\nevery = "1h"\nzone = "dmz"\nshard_size = true\n',
            "jobs.x.shard_size",
        ),
        (
            '[jobs.x]\ntargets = ["a"]\nevery = "1h"\nzone = "dmz"\nbroker = "http://u:pw@h/"\n',
            "jobs.x.broker",
        ),
        (
            '[jobs.x]\ntargets = ["a"]\nevery = "1h"\ningest_queue = "q"\n',
            "jobs.x.ingest_queue",
        ),
        (
            '[jobs.x]\ntargets = ["a"]\nevery = "1h"\nzone = "z"\ningest_queue = "a b"\n',
            "jobs.x.ingest_queue",
        ),
    ],
)
def test_mistakes_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(UsageError) as raised:
        settings(tmp_path, text)
    message = str(raised.value)
    assert key in message
    assert "\n" not in message


def test_zone_jobs(tmp_path: Path) -> None:
    got = settings(
        tmp_path,
        """
[jobs.local]
targets = ["127.0.0.1"]
every = "1h"
[jobs.dmz]
targets = ["127.0.0.0/16"]
every = "1d"
zone = "dmz"
shard_size = "/24"
broker = "amqp://guest:guest@127.0.0.1:5672//"
[jobs.lab]
targets = ["127.0.0.1"]
every = "1d"
zone = "lab-2"
shard_size = 16
ingest_queue = "certscan.ingest.lab"
""",
    )
    local, dmz, lab = got.jobs["local"], got.jobs["dmz"], got.jobs["lab"]
    assert (local.zone, local.shard_size, local.broker) == (None, DEFAULT_SHARD_SIZE, None)
    assert (dmz.zone, dmz.shard_size) == ("dmz", 256)
    assert dmz.broker == "amqp://guest:guest@127.0.0.1:5672//"
    assert (lab.zone, lab.shard_size, lab.broker) == ("lab-2", 16, None)
    assert (lab.ingest_queue, dmz.ingest_queue) == ("certscan.ingest.lab", None)


def test_a_bad_broker_is_reported_without_its_password(tmp_path: Path) -> None:
    text = '[jobs.x]\ntargets = ["a"]\nevery = "1h"\nzone = "z"\nbroker = "http://u:pw@h/"\n'
    with pytest.raises(UsageError) as raised:
        settings(tmp_path, text)
    assert "pw" not in str(raised.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:10943", ("127.0.0.1", 10943)),
        ("[::1]:0", ("::1", 0)),
        ("localhost:80", ("localhost", 80)),
    ],
)
def test_parse_listen(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["", "127.0.0.1", ":80", "127.0.0.1:x", "127.0.0.1:70000"])
def test_parse_listen_rejects(text: str) -> None:
    with pytest.raises(UsageError, match="--listen"):
        parse_listen(text)


def test_job_discovery_keys(tmp_path: Path) -> None:
    from scanner.sweep.modes import DiscoverOptions

    got = settings(
        tmp_path,
        '[jobs.a]\ntargets = ["127.0.0.1"]\nevery = "1h"\n'
        '[jobs.b]\ntargets = ["127.0.0.1"]\nevery = "1h"\n'
        'discover = "connect"\nsyn_retries = 0\nsyn_wait = 2\n',
    )
    assert got.jobs["a"].discover == DiscoverOptions()  # auto, as `certscan sweep`
    assert got.jobs["b"].discover == DiscoverOptions(mode="connect", retries=0, wait=2.0)
    for bad, needle in (('discover = "fast"', "--discover"), ("syn_wait = 0", "--syn-wait")):
        with pytest.raises(UsageError, match=needle) as raised:
            settings(tmp_path, f'[jobs.c]\ntargets = ["127.0.0.1"]\nevery = "1h"\n{bad}\n')
        assert "jobs.c" in str(raised.value)
