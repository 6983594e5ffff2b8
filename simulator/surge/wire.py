"""How a journey's request goes on the wire: straight to geventhttpclient's connection pool.

Owns the lean send of :meth:`simulator.surge.harness.JourneyUser._exchange`, and the cookie jar of
every journey. Locust's ``FastHttpSession`` sends through geventhttpclient's ``UserAgent``, which
for every request builds a ``urllib``-style request object, parses the URL again, copies and merges
header mappings, asks the cookie jar to add and extract cookies (even when it is empty and the answer
sets none) and, for every answer of 400 or more, writes a debugging transcript of the exchange. Those
layers are most of what a journey request costs the load generator beyond a socket write and read
(benchmarks/bench_surge.py). :class:`Wire` sends the same request (method, request URI, headers,
body) to the same ``HTTPClient`` of the same pool, and hands over to the full ``UserAgent`` path for
everything it does not do itself: a cookie to send, the rest of a redirect chain, query parameters
other than text, a body that is neither text nor bytes, an absolute URL, retries.
"""

from __future__ import annotations

import functools
import re
import time
from http.cookiejar import CookieJar
from typing import Any
from urllib.parse import urlencode, urlsplit

from geventhttpclient.header import Headers
from geventhttpclient.url import URL, requote_uri
from locust.contrib.fasthttp import FAILURE_EXCEPTIONS, ErrorResponse, FastHttpSession, FastResponse

_PLAIN_URI = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,/:;=?@]*")
"""A request URI that geventhttpclient's ``requote_uri`` gives back unchanged (no ``%``, no ``#``)."""
_SET_COOKIE = ("set-cookie", "set-cookie2")


class LeanCookieJar(CookieJar):
    """The standard cookie jar, minus its work when there is none: it adds nothing to a request
    when it holds no cookie, and keeps nothing from an answer that sets none. What it sends and
    keeps is the standard jar's in every case."""

    def add_cookie_header(self, request: Any) -> None:
        if self._cookies:
            super().add_cookie_header(request)

    def extract_cookies(self, response: Any, request: Any) -> None:
        headers = response.info()
        if _SET_COOKIE[0] in headers or _SET_COOKIE[1] in headers:
            super().extract_cookies(response, request)


@functools.lru_cache(maxsize=64)
def _base_url(base: str) -> URL:
    """A target base URL parsed once per process (the pool finds a host's client by it)."""
    return URL(base)


class Wire:
    """One journey's sender: the target's ``HTTPClient`` (from the journey's pool, shared or its
    own), the request URI prefix of the target URL, and the user's default headers."""

    __slots__ = ("agent", "defaults", "http", "jar", "prefix", "session")

    def __init__(self, session: FastHttpSession, default_headers: dict[str, str] | None):
        self.session = session
        self.agent = agent = session.client
        self.jar = agent.cookiejar
        self.defaults = default_headers or None  # read, never written
        self.http: Any = None  # the target's HTTPClient, taken from the pool on first use
        self.prefix: str | None = None  # None: this journey always takes the UserAgent path
        base = session.base_url
        if base and agent.max_retries == 0:
            split = urlsplit(base)
            if split.scheme in ("http", "https") and not split.query and not split.fragment:
                self.prefix = split.path

    def send(
        self,
        method: str,
        url: str,
        path: str,
        payload: Any,
        headers: dict[str, str],
        params: Any = None,
        follow: bool = True,
    ) -> FastResponse | ErrorResponse:
        """Send one request to ``url`` (``path`` on the target, or absolute); the answer with its
        headers read and its body not yet read (``FastResponse``), or an ``ErrorResponse`` when no
        answer came, as ``FastHttpSession._send_request_safe_mode`` returns them."""
        jar = self.jar
        if (  # what the lean way does not do: an absolute URL, other parameters, a cookie to send
            self.prefix is None
            or path[:1] != "/"
            or (params and not _plain_params(path, params))
            or (jar is not None and getattr(jar, "_cookies", True))
        ):
            return self._full(method, url, payload, headers, params, follow)
        if params:  # as geventhttpclient's URL(url, params) encodes them
            query = urlencode(params)
            path, url = f"{path}?{query}", f"{url}?{query}"
        if self.defaults:
            headers = {**self.defaults, **headers}
        if payload:
            # The UserAgent's defaults for a body sent without a type (geventhttpclient's _make_request).
            if isinstance(payload, str):
                payload = payload.encode()
                if not _has_content_type(headers):
                    headers["content-type"] = "text/plain; charset=utf-8"
                    headers["content-length"] = str(len(payload))
            elif isinstance(payload, bytes | bytearray | memoryview):
                if not _has_content_type(headers):
                    headers["content-type"] = "application/octet-stream"
            else:  # a mapping or a stream: the UserAgent encodes it
                return self._full(method, url, payload, headers, None, follow)
        uri = self.prefix + path
        if not _PLAIN_URI.fullmatch(uri):
            uri = requote_uri(uri)
        http = self.http
        if http is None:
            http = self.http = self.agent.clientpool.get_client(_base_url(self.session.base_url))
        try:
            started = time.monotonic()
            raw = http.request(method, uri, body=payload, headers=headers)
        except FAILURE_EXCEPTIONS as err:
            return ErrorResponse(None, err)
        response = FastResponse(raw, request=None, sent_request=raw._sent_request)
        response._elapsed = time.monotonic() - started
        answer_headers = response.headers
        request = None  # the urllib-style request, built only for the cookie jar or a redirect
        if jar is not None and (_SET_COOKIE[0] in answer_headers or _SET_COOKIE[1] in answer_headers):
            request = self._request(method, url, payload, headers)
            jar.extract_cookies(response, request)
        if follow and response.status_code in self.agent.redirect_response_codes:
            location = answer_headers.get("location")
            if isinstance(location, str) and location and self.agent.max_redirects > 0:
                if request is None:
                    request = self._request(method, url, payload, headers)
                return self._redirect(response, request, location)
        return response

    def _request(self, method: str, url: str, payload: Any, headers: dict[str, str]) -> Any:
        """The ``urllib``-style request the cookie jar and redirects work on (only when needed)."""
        return self.agent._make_request(url, method, headers=Headers(headers), payload=payload)

    def _redirect(self, response: FastResponse, request: Any, location: str) -> FastResponse | ErrorResponse:
        """Follow a redirect as the UserAgent does (method and body by the status, cookies and
        credentials by the origin), the rest of the chain through it."""
        try:
            request.redirect(response.status_code, location)
        except FAILURE_EXCEPTIONS as err:
            response.release()
            return ErrorResponse(request, err)
        response.release()
        return self.session._send_request_safe_mode(
            request.method,
            request.url,
            payload=request.payload,
            headers=request.headers,
            max_redirects=self.agent.max_redirects - 1,
        )

    def _full(
        self, method: str, url: str, payload: Any, headers: dict[str, str], params: Any, follow: bool
    ) -> FastResponse | ErrorResponse:
        """The UserAgent's path (``follow`` False: a redirect answer is the answer)."""
        agent, send = self.agent, self.session._send_request_safe_mode
        extra = {"params": params} if params else {}
        if follow:
            return send(method, url, payload=payload, headers=headers, **extra)
        redirects, agent.redirect_response_codes = agent.redirect_response_codes, frozenset()
        try:
            return send(method, url, payload=payload, headers=headers, **extra)
        finally:
            agent.redirect_response_codes = redirects


def _plain_params(path: str, params: Any) -> bool:
    """Query parameters the lean send encodes itself: text names and values, on a path without a
    query of its own (lists, numbers and ``None`` values go to the UserAgent)."""
    return (
        type(params) is dict
        and "?" not in path
        and "#" not in path
        and all(type(k) is str and type(v) is str for k, v in params.items())
    )


def _has_content_type(headers: dict[str, str]) -> bool:
    return any(name.lower() == "content-type" for name in headers)


__all__ = ["LeanCookieJar", "Wire"]
