"""Where the CryoSPARC server is and who logs in, with a password that never leaks.

The server is named by ``base_url`` (``CRYOSPARC_BASE_URL``) or by ``host`` + ``base_port``
(``CRYOSPARC_MASTER_HOSTNAME`` / ``CRYOSPARC_BASE_PORT``); the account by ``email``
(``CRYOSPARC_EMAIL``). The password is read from a file (``password_file`` or
``CRYOSPARC_PASSWORD_FILE``) that only its owner may read (mode 0600 or stricter), or from
an environment variable (``CRYOSPARC_PASSWORD``, or the name given in ``password_env``);
never from a configuration file. It is held in a :class:`Secret`, whose repr, str and
format all print ``***``, and :meth:`Secret.scrub` removes it (and the SHA-256 digest that
cryosparc-tools sends in its place) from any text before that text is logged or raised.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryosift.errors import InputError

ENV_BASE_URL = "CRYOSPARC_BASE_URL"
ENV_HOST = "CRYOSPARC_MASTER_HOSTNAME"
ENV_PORT = "CRYOSPARC_BASE_PORT"
ENV_EMAIL = "CRYOSPARC_EMAIL"
ENV_PASSWORD = "CRYOSPARC_PASSWORD"
ENV_PASSWORD_FILE = "CRYOSPARC_PASSWORD_FILE"

#: Configuration keys read by :func:`load_connection_settings`.
CONNECTION_KEYS = ("base_url", "host", "base_port", "email", "password_file", "password_env", "timeout")

MASK = "***"


class Secret:
    """A string that prints as ``***``; :meth:`reveal` gives the value to the one caller that needs it.

    Parameters
    ----------
    value : str
        The secret text (e.g. a password).
    """

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = str(value)

    def reveal(self) -> str:
        """The secret itself (hand it only to the client that logs in)."""
        return self._value

    def scrub(self, text: str) -> str:
        """``text`` with the secret and its SHA-256 hex digest replaced by ``***``."""
        if not self._value:
            return text
        digest = hashlib.sha256(self._value.encode()).hexdigest()
        return str(text).replace(self._value, MASK).replace(digest, MASK)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return f"Secret('{MASK}')"

    def __str__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return MASK

    def __reduce__(self):
        raise TypeError("a Secret cannot be pickled")


@dataclass(frozen=True)
class ConnectionSettings:
    """A CryoSPARC server and the account used on it.

    Attributes
    ----------
    base_url : str
        e.g. ``http://cryosparc.example.org:39000`` (the address of the web interface).
    email : str
        The account's e-mail address.
    password : Secret
        The account's password.
    password_source : str
        Where the password came from (a file path or an environment variable name), for messages.
    timeout : int
        Seconds allowed per HTTP request.
    """

    base_url: str
    email: str
    password: Secret = field(repr=False)
    password_source: str = ""
    timeout: int = 300

    def describe(self) -> str:
        """``email at base_url`` (no password)."""
        return f"{self.email} at {self.base_url}"


def read_password_file(path: str | Path) -> Secret:
    """Read a password from a file that only its owner can read.

    Parameters
    ----------
    path : str or Path
        A regular file holding the password on its first line (mode 0600 or stricter).

    Raises
    ------
    InputError
        Missing, not a regular file, readable by group or others, or empty.
    """
    p = Path(path).expanduser()
    try:
        st = p.stat()
    except FileNotFoundError:
        raise InputError(p, "password file not found") from None
    if not stat.S_ISREG(st.st_mode):
        raise InputError(p, "password file is not a regular file")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise InputError(p, f"password file is readable by group or others (mode {mode:04o}); "
                            f"restrict it with: chmod 600 {p}")
    text = p.read_text().splitlines()
    value = text[0].strip() if text else ""
    if not value:
        raise InputError(p, "password file is empty")
    return Secret(value)


def _base_url(config: Mapping, env: Mapping) -> str:
    url = config.get("base_url")
    host, port = config.get("host"), config.get("base_port")
    if url and (host or port):
        raise InputError(None, "cryosparc: give either base_url or host + base_port, not both")
    if not url and not (host or port):
        url = env.get(ENV_BASE_URL)
        if not url:
            host, port = env.get(ENV_HOST), env.get(ENV_PORT)
    if url:
        url = str(url).rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise InputError(None, f"cryosparc.base_url must start with http:// or https:// (got {url!r})")
        return url
    if not (host or port):
        raise InputError(None, f"no CryoSPARC server: set cryosparc.base_url (or {ENV_BASE_URL}), "
                               f"or host + base_port ({ENV_HOST} / {ENV_PORT})")
    try:
        port = int(port or 39000)
    except ValueError:
        raise InputError(None, f"cryosparc.base_port must be a number (got {port!r})") from None
    return f"http://{host or 'localhost'}:{port}"


def _password(config: Mapping, env: Mapping) -> tuple[Secret, str]:
    if "password" in config:
        raise InputError(None, "cryosparc.password: passwords are not read from configuration files; "
                               f"use password_file (mode 0600) or the {ENV_PASSWORD} environment variable")
    path = config.get("password_file") or env.get(ENV_PASSWORD_FILE)
    if path:
        return read_password_file(path), f"file {Path(path).expanduser()}"
    name = config.get("password_env") or ENV_PASSWORD
    value = env.get(name)
    if not value:
        raise InputError(None, f"no CryoSPARC password: set cryosparc.password_file (a file with mode 0600), "
                               f"{ENV_PASSWORD_FILE}, or the environment variable {name}")
    return Secret(value), f"environment variable {name}"


def load_connection_settings(config: Mapping | None = None, env: Mapping | None = None) -> ConnectionSettings:
    """Connection settings from a configuration block, falling back to the environment.

    Parameters
    ----------
    config : mapping, optional
        Keys among :data:`CONNECTION_KEYS` (other keys are ignored here).
    env : mapping, optional
        Environment variables (default: ``os.environ``).

    Raises
    ------
    InputError
        No server, no e-mail, no password, a ``password`` key in the configuration, or an
        unsafe password file.
    """
    config = dict(config or {})
    env = os.environ if env is None else env
    url = _base_url(config, env)
    email = config.get("email") or env.get(ENV_EMAIL)
    if not email:
        raise InputError(None, f"no CryoSPARC account: set cryosparc.email or {ENV_EMAIL}")
    password, source = _password(config, env)
    try:
        timeout = int(config.get("timeout", 300))
    except (TypeError, ValueError):
        raise InputError(None, "cryosparc.timeout must be a number of seconds "
                               f"(got {config.get('timeout')!r})") from None
    return ConnectionSettings(url, str(email), password, source, timeout)
