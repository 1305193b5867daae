"""The configuration file: every kind of mistake is named with its key path, and valid files load."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.schema import ConfigError, load_config, parse_config

REPO = Path(__file__).resolve().parents[2]
OK = {"scope": {"organization": "123456789012"}}


def test_minimal_config_gets_google_defaults() -> None:
    cfg = parse_config(OK)
    assert cfg.api.container_endpoint == "container.googleapis.com:443"
    assert cfg.api.plaintext is False and cfg.api.anonymous is False
    assert cfg.gate.allow_used_before is False
    assert cfg.scan.window_seconds == 60


def test_example_config_is_valid() -> None:
    cfg = load_config(REPO / "config" / "example.yaml")
    assert cfg.scope.organization == "123456789012"
    assert [w.name for w in cfg.rollout.waves][:1] == ["canary"]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"scope": {"organization": "1"}, "api": {"container_endpont": "x:1"}},
            "api.container_endpont: unknown key",
        ),
        ({"scope": {"organization": "1"}, "scan": {"window_seconds": "soon"}}, "scan.window_seconds:"),
        ({"scope": {}}, "scope: set at least one of organization, folders or projects"),
        ({"api": {}}, "scope: required key is missing"),
        ({"scope": {"folders": ["123"]}}, "scope.folders: each folder must look like 'folders/123'"),
        ({"scope": {"projects": ["Bad_Project"]}}, "scope.projects: 'Bad_Project' is not a valid project id"),
        (
            {
                "scope": {"organization": "1"},
                "api": {"plaintext": True, "container_endpoint": "10.0.0.5:443"},
            },
            "plaintext is allowed only for loopback hosts, but container_endpoint is '10.0.0.5:443'",
        ),
        (
            {
                "scope": {"organization": "1"},
                "api": {"container_endpoint": "https://container.googleapis.com"},
            },
            "api.container_endpoint: must be HOST:PORT",
        ),
        (
            {
                "scope": {"organization": "1"},
                "rollout": {"waves": [{"name": "w1", "select": {"colour": "red"}}]},
            },
            "rollout.waves[0].select.colour: unknown key",
        ),
        (
            {
                "scope": {"organization": "1"},
                "rollout": {
                    "waves": [{"name": "a", "select": {"all": True}}, {"name": "a", "select": {"all": True}}]
                },
            },
            "wave names must be unique; repeated: a",
        ),
        (
            {
                "scope": {"organization": "1"},
                "gate": {"overrides": [{"cluster": "web", "reason": "agent migrated"}]},
            },
            "gate.overrides[0].cluster: must be projects/P/locations/L/clusters/C",
        ),
        (
            {
                "scope": {"organization": "1"},
                "gate": {"overrides": [{"cluster": "projects/shop-prod/locations/us-central1/clusters/web"}]},
            },
            "gate.overrides[0].reason: required key is missing",
        ),
    ],
)
def test_bad_config_names_key_and_problem(data: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(data, "x.yaml")
    assert expected in str(err.value)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"scope": {"organization": "1"}, "scan": {"nope": 1}, "limits": {"concurrency": 0}})
    text = str(err.value)
    assert "2 problem(s)" in text and "scan.nope: unknown key" in text and "limits.concurrency" in text


def test_plaintext_to_loopback_is_allowed() -> None:
    cfg = parse_config(
        {
            "scope": {"organization": "1"},
            "api": {
                "plaintext": True,
                "container_endpoint": "127.0.0.1:5000",
                "resourcemanager_endpoint": "localhost:5000",
            },
        }
    )
    assert cfg.api.plaintext


def test_malformed_yaml_says_where(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("scope:\n  organization: [1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"not valid YAML at line \d+, column \d+"):
        load_config(path)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the configuration file"):
        load_config(tmp_path / "nope.yaml")


def test_top_level_must_be_a_mapping() -> None:
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        parse_config(["scope"])


def test_token_is_not_in_the_repr() -> None:
    cfg = parse_config({**OK, "api": {"kubernetes_token": "s3cr3t-token-value"}})
    assert "s3cr3t-token-value" not in repr(cfg)
