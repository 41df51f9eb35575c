"""Connection settings: where the server is, who logs in, and a password that never shows."""

from __future__ import annotations

import hashlib
import logging
import os
import pickle

import httpx
import pytest
from cryosparc.errors import APIError

from cryosift.engines.cryosparc import CryosparcEngine
from cryosift.engines.cryosparc.adapter import CryosparcAdapter
from cryosift.engines.cryosparc.credentials import Secret, load_connection_settings, read_password_file
from cryosift.errors import EngineError, InputError

PASSWORD = "correct-horse-battery"


def password_file(tmp_path, mode=0o600, text=PASSWORD + "\n"):
    p = tmp_path / "cryosparc-password"
    p.write_text(text)
    os.chmod(p, mode)
    return p


def test_server_account_and_password_from_the_environment():
    env = {"CRYOSPARC_BASE_URL": "http://cs.example.org:39000/", "CRYOSPARC_EMAIL": "me@example.org",
           "CRYOSPARC_PASSWORD": PASSWORD}
    s = load_connection_settings({}, env)
    assert (s.base_url, s.email, s.password.reveal()) == ("http://cs.example.org:39000", "me@example.org", PASSWORD)
    assert s.password_source == "environment variable CRYOSPARC_PASSWORD" and s.timeout == 300
    s = load_connection_settings({"host": "gpu1", "base_port": 61000, "password_env": "MY_CS_PW", "timeout": 30},
                                 {"CRYOSPARC_EMAIL": "a@b", "MY_CS_PW": PASSWORD})
    assert s.base_url == "http://gpu1:61000" and s.timeout == 30
    s = load_connection_settings({}, {"CRYOSPARC_MASTER_HOSTNAME": "gpu2", "CRYOSPARC_EMAIL": "a@b",
                                      "CRYOSPARC_PASSWORD": PASSWORD})
    assert s.base_url == "http://gpu2:39000"


@pytest.mark.parametrize("config, env, message", [
    ({"base_url": "http://a", "host": "b"}, {}, "either base_url or host"),
    ({}, {}, "no CryoSPARC server"),
    ({"base_url": "cs.example.org"}, {}, "must start with http"),
    ({"base_url": "http://a"}, {}, "no CryoSPARC account"),
    ({"base_url": "http://a", "email": "a@b"}, {}, "no CryoSPARC password"),
    ({"base_url": "http://a", "email": "a@b", "password": PASSWORD}, {}, "not read from configuration files"),
    ({"host": "a", "base_port": "x", "email": "a@b"}, {"CRYOSPARC_PASSWORD": "p"}, "base_port must be a number"),
])
def test_missing_or_misplaced_settings_are_named(config, env, message):
    with pytest.raises(InputError, match=message) as err:
        load_connection_settings(config, env)
    assert PASSWORD not in str(err.value)


def test_password_file_must_be_private(tmp_path):
    ok = password_file(tmp_path)
    s = load_connection_settings({"base_url": "http://a", "email": "a@b", "password_file": str(ok)}, {})
    assert s.password.reveal() == PASSWORD and s.password_source == f"file {ok}"
    assert read_password_file(password_file(tmp_path, 0o400)).reveal() == PASSWORD
    for mode in (0o640, 0o644, 0o604):
        with pytest.raises(InputError) as err:
            read_password_file(password_file(tmp_path, mode))
        assert f"mode {mode:04o}" in str(err.value) and "chmod 600" in str(err.value)
        assert PASSWORD not in str(err.value)
    with pytest.raises(InputError, match="empty"):
        read_password_file(password_file(tmp_path, text="\n"))
    with pytest.raises(InputError, match="not found"):
        read_password_file(tmp_path / "none")
    with pytest.raises(InputError, match="not a regular file"):
        read_password_file(tmp_path)
    env_file = password_file(tmp_path, 0o644)
    with pytest.raises(InputError, match="readable by group or others"):  # also when named by the environment
        load_connection_settings({"base_url": "http://a", "email": "a@b"}, {"CRYOSPARC_PASSWORD_FILE": str(env_file)})


def test_the_password_never_prints(tmp_path):
    secret = Secret(PASSWORD)
    s = load_connection_settings({"base_url": "http://a", "email": "a@b"}, {"CRYOSPARC_PASSWORD": PASSWORD})
    for text in (repr(secret), str(secret), f"{secret}", f"{secret:>30}", repr(s), str(s), s.describe()):
        assert PASSWORD not in text
    assert repr(secret) == "Secret('***')"
    digest = hashlib.sha256(PASSWORD.encode()).hexdigest()
    assert secret.scrub(f"sent {PASSWORD} as {digest}") == "sent *** as ***"
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    engine = CryosparcEngine({"project": "P3", "workspace": "W1", "base_url": "http://a", "email": "a@b"})
    assert PASSWORD not in repr(engine) and PASSWORD not in repr(engine.settings)


def factory_raising(exc):
    def factory(**kwargs):
        raise exc
    return factory


def settings():
    return load_connection_settings({"base_url": "http://cs.example.org:39000", "email": "me@example.org"},
                                    {"CRYOSPARC_PASSWORD": PASSWORD})


def wrapped(cause: Exception) -> RuntimeError:
    # cryosparc-tools wraps every login failure in a RuntimeError chained to the cause
    try:
        raise RuntimeError(f"Could not connect to CryoSPARC due to error:\n{cause}") from cause
    except RuntimeError as exc:
        return exc


def test_unreachable_server_and_refused_login_are_told_apart(caplog):
    caplog.set_level(logging.DEBUG)
    refused = APIError("Invalid credentials", res=httpx.Response(401, request=httpx.Request("POST", "http://cs/api")))
    cases = [
        (wrapped(refused), "refused the e-mail/password (HTTP 401)"),
        (wrapped(ValueError(f"odd reply mentioning {PASSWORD}")), "talks to CryoSPARC v5.0 servers only"),
    ]
    for exc, message in cases:
        with pytest.raises(EngineError) as err:
            CryosparcAdapter.connect(settings(), client_factory=factory_raising(exc))
        text = str(err.value)
        assert message in text and "http://cs.example.org:39000" in text and "me@example.org" in text
        assert PASSWORD not in text and hashlib.sha256(PASSWORD.encode()).hexdigest() not in text
        assert err.value.__cause__ is None and err.value.__suppress_context__
    # An unreachable server is one line (exit 2) naming the address, the account and the network error.
    unreachable = wrapped(httpx.ConnectError(f"[Errno 111] Connection refused (auth {PASSWORD})"))
    with pytest.raises(InputError) as err:
        CryosparcAdapter.connect(settings(), client_factory=factory_raising(unreachable))
    assert str(err.value) == ("http://cs.example.org:39000: CryoSPARC did not answer while logging in as "
                              "me@example.org (ConnectError: [Errno 111] Connection refused (auth ***)); check "
                              "cryosparc.base_url and that CryoSPARC is running")
    with pytest.raises(InputError, match="no CryoSPARC credentials"):
        CryosparcAdapter.connect(settings(), client_factory=factory_raising(ValueError("authentication not provided")))
    assert PASSWORD not in caplog.text and "me@example.org at http://cs.example.org:39000" in caplog.text


def test_engine_logs_in_only_when_the_server_is_needed(tmp_path):
    bad = password_file(tmp_path, 0o644)
    engine = CryosparcEngine({"project": "P3", "workspace": "W1", "base_url": "http://a", "email": "a@b",
                              "password_file": str(bad), "micrographs": ["J1.micrographs"]})
    assert len(engine.plan(256, source="J2.particles", cutoffs=[3.5])) == 16  # a plan needs no login
    with pytest.raises(InputError, match="chmod 600"):
        engine.check()
