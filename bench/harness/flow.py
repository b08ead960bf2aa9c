"""Drive the whole authorization-code flow (RFC 6749 §4.1 with PKCE S256, RFC 7636; OpenID
Connect) the way a browser and a relying party do, from N threads for S seconds.

One flow, for the fixture's ``web`` client (client_secret_basic) and its user:

1. GET /oauth/authorize: a new session is sent to the sign-in page;
2. GET the sign-in page and POST its form (CSRF token from the page);
3. GET /oauth/authorize again and POST the consent form (REQUEST_APPROVAL_PROMPT is "force":
   the consent page is shown every time);
4. read ``code`` from the 302 to the redirect_uri, after checking ``state`` and ``iss``
   (RFC 9207); the redirect is not followed, its host does not exist;
5. POST /oauth/token with the code and the code_verifier: 200 with an access token, an ID
   token carrying the nonce, and a refresh token.

``signed_in=True`` measures steps 3-5 only: each thread signs in once (a PBKDF2 password
check, ~250 ms by design) and then repeats authorize, consent and token on its session.

The server runs in its production shape behind a simulated TLS proxy: every request carries
the proxy's headers (ours.PROXY_HEADERS), so the server believes it speaks HTTPS and sets
Secure cookies, and checks the Origin of every form POST (Django's CSRF check on a secure
request). The load generator talks plain HTTP to 127.0.0.1, so its cookie jar is told that
http counts as secure, and it sends the Origin the browser would.

    .venv/bin/python bench/harness/flow.py --url http://127.0.0.1:PORT \\
        --fixture bench/out/fixture-ES256.json --threads 8 --seconds 10 [--signed-in]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import secrets
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlencode, urlsplit

import requests

if __package__:
    from .ours import PROXY_HEADERS
else:  # run as a script: python bench/harness/flow.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from harness.ours import PROXY_HEADERS

SCOPE = "openid orders:read"
LOGIN_PATH = "/accounts/login/"
# Room for error descriptions in the result; the rest are only counted.
ERROR_SAMPLES = 5
TIMEOUT = 30.0


class FlowError(Exception):
    """One flow went wrong: a short description safe to print (no code, token or secret)."""


class _FormReader(HTMLParser):
    """The inputs of one form on a page (by id, or the first form with a POST method)."""

    def __init__(self, form_id: str | None) -> None:
        super().__init__()
        self.form_id = form_id
        self.inside = False
        self.found = False
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form" and not self.found:
            wanted = attributes.get("id") == self.form_id if self.form_id else attributes.get("method") == "post"
            self.inside = self.found = wanted
        elif tag == "input" and self.inside and attributes.get("type") == "hidden" and attributes.get("name"):
            self.fields[attributes["name"]] = attributes.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.inside = False


def hidden_fields(page: str, form_id: str | None = None) -> dict[str, str]:
    reader = _FormReader(form_id)
    reader.feed(page)
    if not reader.found:
        raise FlowError(f"no form {form_id or 'method=post'} on the page")
    return reader.fields


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _claims(jwt: str) -> dict[str, object]:
    """The payload of a JWT, unverified: the flow checks the nonce, not the signature."""
    payload = jwt.split(".")[1]
    decoded: dict[str, object] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return decoded


class _BehindProxySession(requests.Session):
    """A browser session on the proxy's inner side. The server sets Secure cookies (it believes
    it speaks HTTPS, behind the TLS proxy), which a cookie jar sends over https only; this
    client speaks http to 127.0.0.1, so the jar's cookies lose the flag before each request.
    (A cookie policy on the jar would not do: requests copies the cookies into a fresh jar
    with the default policy for every request.)"""

    def prepare_request(self, request: requests.Request) -> requests.PreparedRequest:
        for cookie in self.cookies:
            cookie.secure = False
        return super().prepare_request(request)


def _session(headers: dict[str, str]) -> requests.Session:
    session = _BehindProxySession()
    session.headers.update(headers)
    return session


@dataclass
class Flow:
    """One thread's client: a browser session for the user plus the relying party's secrets."""

    base_url: str
    client: dict[str, str]
    issuer: str
    headers: dict[str, str]
    session: requests.Session = field(init=False)
    back_channel: requests.Session = field(init=False)

    def __post_init__(self) -> None:
        self.session = _session(self.headers)
        self.back_channel = requests.Session()
        self.back_channel.headers.update(self.headers)
        host = self.headers.get("Host")
        scheme = self.headers.get("X-Forwarded-Proto", urlsplit(self.base_url).scheme)
        # What a browser sends with a form POST; Django's CSRF check compares it to the host.
        self.origin = f"{scheme}://{host}" if host else self.base_url

    def reset(self) -> None:
        self.session.close()
        self.session = _session(self.headers)

    def _local(self, location: str) -> str:
        """A Location on the server (absolute with the public host, or relative) as a URL on
        base_url."""
        parts = urlsplit(location)
        return f"{self.base_url}{parts.path}" + (f"?{parts.query}" if parts.query else "")

    def _expect(self, response: requests.Response, status: int, step: str) -> requests.Response:
        if response.status_code != status:
            detail = ""
            if response.headers.get("Content-Type", "").startswith("application/json"):
                with suppress(ValueError):  # an RFC 6749 §5.2 error code, never a description
                    detail = " " + str(response.json().get("error", ""))
            raise FlowError(f"{step}: HTTP {response.status_code}{detail}")
        return response

    def _post_form(self, url: str, data: dict[str, str]) -> requests.Response:
        return self.session.post(
            url,
            data=data,
            headers={"Origin": self.origin, "Referer": self.origin + urlsplit(url).path},
            allow_redirects=False,
            timeout=TIMEOUT,
        )

    def _authorize_url(self) -> tuple[str, dict[str, str]]:
        """A fresh authorization request: its URL, and the state, nonce and code_verifier the
        relying party keeps to check the answer."""
        verifier = secrets.token_urlsafe(48)  # 64 characters, RFC 7636 §4.1
        params = {
            "response_type": "code",
            "client_id": self.client["client_id"],
            "redirect_uri": self.client["redirect_uri"],
            "scope": SCOPE,
            "state": secrets.token_urlsafe(16),
            "nonce": secrets.token_urlsafe(16),
            "code_challenge": _b64url(hashlib.sha256(verifier.encode()).digest()),
            "code_challenge_method": "S256",
        }
        return f"{self.base_url}/oauth/authorize?{urlencode(params)}", {**params, "code_verifier": verifier}

    def full(self) -> None:
        """Steps 1-5 in a new session."""
        self.reset()
        authorize, request = self._authorize_url()
        self.authorize_and_redeem(self.sign_in(authorize), request)

    def signed_in(self) -> None:
        """Steps 3-5 in the session a full flow signed in."""
        self.authorize_and_redeem(*self._authorize_url())

    def sign_in(self, authorize: str) -> str:
        """Steps 1-2: a new session asks for a code, is sent to sign in, signs in, and is sent
        back; returns where to (the authorization request, on base_url)."""
        response = self._expect(self.session.get(authorize, allow_redirects=False, timeout=TIMEOUT), 302, "authorize")
        login_url = self._local(response.headers["Location"])
        if urlsplit(login_url).path != LOGIN_PATH:
            raise FlowError(f"authorize: redirected to {urlsplit(login_url).path}, not the sign-in page")
        page = self._expect(self.session.get(login_url, timeout=TIMEOUT), 200, "sign-in page")
        form = hidden_fields(page.text)
        form.update(username=self.client["username"], password=self.client["password"])
        response = self._post_form(login_url, form)
        if response.status_code == 200:
            raise FlowError("sign-in: the form came back (username or password refused?)")
        back = self._local(self._expect(response, 302, "sign-in").headers["Location"])
        if urlsplit(back).path != urlsplit(authorize).path:
            raise FlowError(f"sign-in: redirected to {urlsplit(back).path}, not back to authorize")
        return back

    def authorize_and_redeem(self, authorize: str, request: dict[str, str]) -> None:
        """Steps 3-5 on a signed-in session: consent, the code from the redirect, the tokens."""
        page = self.session.get(authorize, allow_redirects=False, timeout=TIMEOUT)
        if page.status_code == 302:
            raise FlowError(f"authorize: HTTP 302 to {urlsplit(page.headers['Location']).path} (not signed in?)")
        self._expect(page, 200, "authorize")
        consent = hidden_fields(page.text, "authorizationForm")
        consent["allow"] = "Allow"
        response = self._expect(self._post_form(authorize, consent), 302, "consent")
        location = urlsplit(response.headers["Location"])
        if f"{location.scheme}://{location.netloc}{location.path}" != self.client["redirect_uri"]:
            raise FlowError(f"consent: redirected to {location.netloc}{location.path}, not the redirect_uri")
        answer = {name: values[0] for name, values in parse_qs(location.query).items()}
        if "error" in answer:
            raise FlowError(f"consent: error={answer['error']}")
        if answer.get("state") != request["state"]:
            raise FlowError("consent: state does not match")
        if answer.get("iss") != self.issuer:  # RFC 9207 §2.4
            raise FlowError("consent: iss is not the issuer")
        if not answer.get("code"):
            raise FlowError("consent: no code")
        # The relying party's back channel: its own connection, no browser cookies.
        token = self.back_channel.post(
            f"{self.base_url}/oauth/token",
            data={
                "grant_type": "authorization_code",
                "code": answer["code"],
                "redirect_uri": self.client["redirect_uri"],
                "code_verifier": request["code_verifier"],
            },
            auth=(self.client["client_id"], self.client["client_secret"]),
            timeout=TIMEOUT,
        )
        body = self._expect(token, 200, "token").json()
        missing = [name for name in ("access_token", "id_token", "refresh_token") if not body.get(name)]
        if missing:
            raise FlowError(f"token: no {', '.join(missing)}")
        if _claims(body["id_token"]).get("nonce") != request["nonce"]:
            raise FlowError("token: id_token nonce does not match")

    def close(self) -> None:
        self.session.close()
        self.back_channel.close()


@dataclass
class _Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    durations: list[float] = field(default_factory=list)
    errors: int = 0
    samples: list[str] = field(default_factory=list)

    def failed(self, description: str) -> None:
        with self.lock:
            self.errors += 1
            if len(self.samples) < ERROR_SAMPLES:
                self.samples.append(description)


@contextmanager
def _caught(tally: _Tally) -> Iterator[list[bool]]:
    """Counts a FlowError or a transport error as one failed flow; yields [ok]."""
    ok = [False]
    try:
        yield ok
        ok[0] = True
    except FlowError as exc:
        tally.failed(str(exc))
    except requests.RequestException as exc:
        tally.failed(f"{type(exc).__name__}")
    except (KeyError, ValueError, IndexError) as exc:  # a malformed answer (missing header, bad JSON)
        tally.failed(f"malformed response: {type(exc).__name__}")


def _percentile(ordered: list[float], fraction: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def run_flows(
    base_url: str,
    fixture: dict[str, object],
    *,
    threads: int,
    seconds: float,
    signed_in: bool,
    headers: dict[str, str],
) -> dict[str, object]:
    """Whole authorization-code flows per second from ``threads`` threads for ``seconds``.

    A flow started before the deadline is finished and counted. With ``signed_in`` a thread
    signs in before the clock starts (and again, uncounted, after a failed flow)."""
    clients: dict[str, dict[str, str]] = fixture["clients"]  # type: ignore[assignment]
    issuer = str(fixture["issuer"])
    tally = _Tally()
    flows = [Flow(base_url.rstrip("/"), clients["web"], issuer, dict(headers)) for _ in range(threads)]
    prepared = threading.Barrier(threads + 1)
    go = threading.Event()
    clock = {"deadline": 0.0}

    def work(flow: Flow) -> None:
        signed = False
        if signed_in:  # before the clock starts
            with _caught(tally) as ok:
                flow.full()
            signed = ok[0]
        prepared.wait()
        go.wait()
        while time.monotonic() < clock["deadline"]:
            if signed_in and not signed:
                # Sign in again, uncounted, after a failed flow (its session may be gone).
                with _caught(tally) as ok:
                    flow.full()
                signed = ok[0]
                continue
            started = time.perf_counter()
            with _caught(tally) as ok:
                if signed_in:
                    flow.signed_in()
                else:
                    flow.full()
            if ok[0]:
                with tally.lock:
                    tally.durations.append(time.perf_counter() - started)
            signed = ok[0]

    workers = [threading.Thread(target=work, args=(flow,), daemon=True) for flow in flows]
    for worker in workers:
        worker.start()
    prepared.wait()
    start = time.monotonic()
    clock["deadline"] = start + seconds
    go.set()
    for worker in workers:
        worker.join()
    elapsed = time.monotonic() - start
    for flow in flows:
        flow.close()
    ordered = sorted(tally.durations)
    return {
        "flows": len(ordered),
        "seconds": elapsed,
        "rps": len(ordered) / elapsed if elapsed else 0.0,
        "p50_ms": _percentile(ordered, 0.50) * 1000,
        "p99_ms": _percentile(ordered, 0.99) * 1000,
        "errors": tally.errors,
        "error_samples": tally.samples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="the server, e.g. http://127.0.0.1:8000")
    parser.add_argument("--fixture", required=True, help="the fixture bench/harness/seed.py wrote")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--signed-in", action="store_true", help="sign in once per thread; time steps 3-5")
    parser.add_argument("--cpus", default="1", help="CPUs for the load generator (the server's are taken)")
    args = parser.parse_args()
    if args.cpus:
        os.sched_setaffinity(0, {int(cpu) for cpu in args.cpus.split(",")})
    with open(args.fixture) as handle:
        fixture = json.load(handle)
    result = run_flows(
        args.url,
        fixture,
        threads=args.threads,
        seconds=args.seconds,
        signed_in=args.signed_in,
        headers=PROXY_HEADERS,
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
