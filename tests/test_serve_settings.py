"""tandem.yaml's serving section (runtime/serving_settings.py), the token as a Secret, and the loopback rule."""

import pickle

import pytest

from runtime.errors import UserError
from runtime.project import load_project
from runtime.secrets import Secret
from serving.access import authorized, check_bind, is_loopback

TOKEN = "s3cret-" + "0123456789abcdef"


def project(tmp_path, serving):
    (tmp_path / "tandem.yaml").write_text("project: shop\ncatalogs: [examples.transactions.features.transactions]\n"
                                          + serving)
    return load_project(tmp_path / "tandem.yaml")


def test_without_a_section_there_is_no_token_and_the_defaults_hold(tmp_path, monkeypatch):
    monkeypatch.delenv("TANDEM_SERVE_TOKEN", raising=False)
    settings = project(tmp_path, "").serving
    assert settings.token is None and settings.max_entities == 1000 and settings.timeout_ms == 1000
    assert settings.breaker_failures == 5 and settings.breaker_reset_ms == 10_000
    assert settings.degraded_refresh_ms == 250


def test_the_breaker_settings_are_read(tmp_path, monkeypatch):
    settings = project(tmp_path, "serving:\n  breaker_failures: 2\n  breaker_reset: 1500ms\n").serving
    assert settings.breaker_failures == 2 and settings.breaker_reset_ms == 1500


@pytest.mark.parametrize("text, ms", [("0s", 0), ("100ms", 100), ("1m", 60_000)])
def test_the_degraded_marks_refresh_is_read_zero_included(tmp_path, text, ms):
    assert project(tmp_path, f"serving:\n  degraded_refresh: {text}\n").serving.degraded_refresh_ms == ms


def test_the_section_is_read_and_the_token_is_never_shown(tmp_path, monkeypatch):
    monkeypatch.delenv("TANDEM_SERVE_TOKEN", raising=False)
    proj = project(tmp_path, f"serving:\n  token: {TOKEN}\n  max_entities: 20\n  timeout: 250ms\n")
    assert proj.serving.token.reveal() == TOKEN and proj.serving.max_entities == 20 and proj.serving.timeout_ms == 250
    for shown in (repr(proj), str(proj.serving), f"{proj.serving.token}", repr(proj.serving.token)):
        assert TOKEN not in shown
    assert pickle.loads(pickle.dumps(proj.serving.token)).reveal() == TOKEN  # a project may go to a worker


def test_the_environment_overrides_the_files_token(tmp_path, monkeypatch):
    monkeypatch.setenv("TANDEM_SERVE_TOKEN", "from-the-environment-1")
    assert project(tmp_path, f"serving:\n  token: {TOKEN}\n").serving.token.reveal() == "from-the-environment-1"


@pytest.mark.parametrize("serving, text", [
    ("serving:\n  tokn: x\n", "serving: unknown key 'tokn'; the keys are breaker_failures, breaker_reset, "
                              "degraded_refresh, max_entities, timeout, token"),
    ("serving: [token]\n", "'serving' must be a mapping of breaker_failures, breaker_reset, degraded_refresh"),
    ("serving:\n  token: short-secret\n", "serving.token is too short or has spaces around it"),
    ("serving:\n  token: 12345678901234567890\n", "serving.token must be a string"),
    ("serving:\n  max_entities: 0\n", "serving.max_entities must be a whole number from 1 to 1000000 (got 0)"),
    ("serving:\n  max_entities: many\n", "serving.max_entities must be a whole number"),
    ("serving:\n  timeout: 1 second\n", "serving.timeout: invalid duration '1 second'"),
    ("serving:\n  timeout: 0s\n", "serving.timeout must be longer than 0"),
    ("serving:\n  breaker_failures: 0\n", "serving.breaker_failures must be a whole number from 1 to 1000 (got 0)"),
    ("serving:\n  breaker_failures: true\n", "serving.breaker_failures must be a whole number from 1 to 1000"),
    ("serving:\n  breaker_failures: 2.5\n", "serving.breaker_failures must be a whole number from 1 to 1000"),
    ("serving:\n  breaker_reset: soon\n", "serving.breaker_reset: invalid duration 'soon'"),
    ("serving:\n  breaker_reset: 0ms\n", "serving.breaker_reset must be longer than 0"),
    ("serving:\n  degraded_refresh: -1s\n", "serving.degraded_refresh: invalid duration '-1s'"),
    ("serving:\n  degraded_refresh: 2m\n", "serving.degraded_refresh must be at most 1m (got '2m')"),
])
def test_a_bad_section_is_one_line_naming_the_key_and_never_the_token(tmp_path, monkeypatch, serving, text):
    monkeypatch.delenv("TANDEM_SERVE_TOKEN", raising=False)
    with pytest.raises(UserError) as e:
        project(tmp_path, serving)
    assert text in str(e.value) and "short-secret" not in str(e.value) and "12345678901234567890" not in str(e.value)


def test_loopback_hosts():
    for host in ("127.0.0.1", "localhost", "LOCALHOST", "::1", "[::1]", "127.8.9.10"):
        assert is_loopback(host), host
        check_bind(host, None)
    for host in ("0.0.0.0", "::", "10.0.0.1", "192.168.1.2", "example.com", "127.0.0.1.example.com", ""):
        assert not is_loopback(host), host
        with pytest.raises(UserError, match="is not a loopback address and no API token is configured"):
            check_bind(host, None)
        check_bind(host, Secret(TOKEN))  # a token lets it listen anywhere


def test_the_authorization_header_rule():
    token = Secret(TOKEN)
    ok = [(b"authorization", f"Bearer {TOKEN}".encode())]
    assert authorized(token, ok) and authorized(token, [(b"Authorization", f"bearer  {TOKEN}".encode())])
    for headers in ([], [(b"authorization", TOKEN.encode())], [(b"authorization", f"Bearer {TOKEN}0".encode())],
                    [(b"authorization", f"Token {TOKEN}".encode())], ok + ok, [(b"x-token", TOKEN.encode())],
                    [(b"authorization", "Bearer ü".encode())], [(b"authorization", b"Bearer \xff")]):
        assert not authorized(token, headers), headers
