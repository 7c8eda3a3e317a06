"""The API key: every /v1 route needs it, it is compared in constant time, and it is never logged."""

from __future__ import annotations

import secrets
from types import SimpleNamespace

import httpx
import pytest

from tests.server.harness import API_KEY

MESSAGES = [{"role": "user", "content": "What is 3 + 14 - 7?"}]


def v1_routes(server) -> list[tuple[str, str]]:
    """Every /v1 route the server's own OpenAPI schema lists (new endpoints are covered as they land)."""
    paths = server.get("/openapi.json").json()["paths"]
    return [(method.upper(), path) for path, methods in paths.items() if path.startswith("/v1/") for method in methods]


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="none"),
        pytest.param({"Authorization": "Bearer wrong-key"}, id="wrong"),
        pytest.param({"Authorization": f"Bearer {API_KEY[:-1]}"}, id="prefix"),
        pytest.param({"Authorization": f"Bearer {API_KEY}x"}, id="longer"),
        pytest.param({"Authorization": f"Basic {API_KEY}"}, id="other-scheme"),
        pytest.param({"Authorization": API_KEY}, id="no-scheme"),
        pytest.param({"X-API-Key": API_KEY}, id="other-header"),
    ],
)
def test_every_v1_route_answers_401_without_the_key(server, headers):
    routes = v1_routes(server)
    assert {("POST", "/v1/chat/completions"), ("POST", "/v1/completions"), ("GET", "/v1/models")} <= set(routes)
    for method, path in routes:
        response = httpx.request(
            method,
            server.base_url + path,
            headers=headers,
            timeout=30,
            json={"messages": MESSAGES, "prompt": "x"} if method == "POST" else None,
        )
        assert response.status_code == 401, (method, path, response.text)
        assert response.json() == {
            "error": {
                "message": response.json()["error"]["message"],
                "type": "invalid_request_error",
                "param": None,
                "code": "invalid_api_key",
            }
        }


def test_the_key_works_with_any_case_of_bearer(server):
    response = httpx.get(server.base_url + "/v1/models", headers={"Authorization": f"bearer {API_KEY}"}, timeout=30)
    assert response.status_code == 200


def test_the_key_is_compared_in_constant_time(monkeypatch):
    """The comparison goes through `secrets.compare_digest`, whose time does not depend on how much of a
    guess is right (a timing test would be too noisy on a shared machine to tell anything)."""
    from probexit.server import app as app_module
    from probexit.server.errors import APIError

    compared = []
    real = secrets.compare_digest
    monkeypatch.setattr(app_module.secrets, "compare_digest", lambda a, b: compared.append((a, b)) or real(a, b))

    def request(header: str):
        config = SimpleNamespace(api_key="s3cret")
        return SimpleNamespace(
            app=SimpleNamespace(state=SimpleNamespace(config=config)), headers={"authorization": header}
        )

    app_module._require_api_key(request("Bearer s3cret"))
    with pytest.raises(APIError):
        app_module._require_api_key(request("Bearer s3creT"))
    assert compared == [(b"s3cret", b"s3cret"), (b"s3creT", b"s3cret")]


def test_the_key_is_never_logged_nor_echoed(server):
    wrong = "wrong-key-0123456789"
    for key in (wrong, None):
        response = server.post("/v1/chat/completions", {"messages": MESSAGES, "max_tokens": 4}, key=key)
        assert response.status_code == 401 and wrong not in response.text and API_KEY not in response.text
    assert server.post("/v1/chat/completions", {"messages": MESSAGES, "max_tokens": 4}).status_code == 200
    assert server.post("/v1/chat/completions", {"messages": MESSAGES, "n": 0}).status_code == 400
    for text in (
        server.log.read_text(errors="replace"),
        server.get("/metrics").text,
        server.get("/v1/models", headers={"Authorization": f"Bearer {API_KEY}"}).text,
    ):
        assert API_KEY not in text and wrong not in text
