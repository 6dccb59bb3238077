"""A PostgreSQL URL read as libpq reads it: checked when the settings are read, so that a bad
one stops start-up naming the setting, and its passwords kept out of every message."""

from __future__ import annotations

from urllib.parse import unquote

POSTGRES_SCHEMES = ("postgresql://", "postgres://")
SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
# Query parameters that carry a secret (libpq's keywords; sslpassword unlocks the client key).
SECRET_PARAMETERS = frozenset({"password", "sslpassword"})


def split_credentials(url: str) -> tuple[str, str, str | None, str]:
    """(scheme://, user, password or None, the rest) as libpq reads a URL: the user
    information is what precedes an @ found before the first /, taken here up to the last
    such @ so that an unencoded @ in a password stays on the hidden side. Without a password
    the user information stays in the rest (a query there is still a query)."""
    scheme, separator, rest = url.partition("://")
    head = rest.partition("/")[0]
    userinfo = head[:head.rindex("@")] if "@" in head else ""
    if ":" not in userinfo:
        return scheme + separator, "", None, rest
    user, _, password = userinfo.partition(":")
    return scheme + separator, user, password, rest[len(userinfo) + 1:]


def _masked_query(query: str) -> str:
    fields = []
    for field in query.split("&"):
        key, equals, _ = field.partition("=")
        secret = equals and unquote(key) in SECRET_PARAMETERS
        fields.append(f"{key}=***" if secret else field)
    return "&".join(fields)


def redact_url(url: str) -> str:
    """The URL with its passwords (in the user information, and password= or sslpassword=
    in the query string) replaced by ***, everything else as written. Never raises: a URL
    libpq would refuse is redacted as far as it can be read."""
    scheme, user, password, rest = split_credentials(url)
    userinfo = "" if password is None else f"{user}:***@"
    where, question, query = rest.partition("?")
    return scheme + userinfo + where + question + _masked_query(query)


def url_secrets(url: str) -> list[str]:
    """The URL's passwords as written and percent-decoded (as libpq uses them), longest
    first; a password holding an unencoded @ also in its pieces (libpq cuts it at the
    first @ and may echo the rest as the host's name)."""
    _, _, password, rest = split_credentials(url)
    found = set() if password is None else {password, *password.split("@")}
    for field in rest.partition("?")[2].split("&"):
        key, _, value = field.partition("=")
        if unquote(key) in SECRET_PARAMETERS:
            found.add(value)
    found |= {unquote(secret) for secret in found}
    return sorted((secret for secret in found if secret), key=len, reverse=True)


def scrub_url(text: str, url: str) -> str:
    """`text` (a driver's message) with `url` shown redacted and its passwords as ***."""
    text = text.replace(url, redact_url(url))
    for secret in url_secrets(url):
        text = text.replace(secret, "***")
    return text


def checked_url(text: str) -> str:
    """A URL libpq accepts, checked here so that a bad one stops start-up naming the
    setting: libpq itself checks sslmode and the port only when connecting. No message
    shows the password."""
    head, _, path = text.partition("://")[2].partition("/")
    if head.count("@") > 1 or "@" in path.partition("?")[0]:
        # libpq takes the first @ as the end of the password, Python's urllib the last.
        raise ValueError("must hold no @ but the one before the host: percent-encode any "
                         "other @ (in the user name, password or database name) as %40")
    # Imported here: SQLite users' start-up does not load the driver.
    from psycopg import Error
    from psycopg.conninfo import conninfo_to_dict

    try:
        parameters = conninfo_to_dict(text)
    except Error as exc:
        reason = " ".join(scrub_url(str(exc), text).split())
        raise ValueError(f"is not a valid PostgreSQL URL: {reason}") from None
    sslmode = parameters.get("sslmode")
    if sslmode is not None and sslmode not in SSLMODES:
        raise ValueError(f"has sslmode={sslmode}: must be one of {', '.join(SSLMODES)}")
    for port in str(parameters.get("port", "")).split(","):
        if port and not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
            # (Not echoed: a password with an unencoded / is read as host and port.)
            raise ValueError("has a port that is not a number from 1 to 65535")
    return text
