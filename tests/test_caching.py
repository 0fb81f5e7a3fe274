"""HTTP caching of answers fixed by their seed: strong ETags, immutable, 304 without computing; no-store otherwise."""

from __future__ import annotations

import re

import httpx
import pytest

from service.caching import entity_tag, matches
from tests.conftest import scraped


def generator_runs(http: httpx.Client) -> float:
    return scraped(http, "inference_batch_size_count", session="generator")


@pytest.fixture()
def http(shipped_server):
    with httpx.Client(base_url=shipped_server.url, timeout=30) as client:
        yield client


@pytest.mark.parametrize("path", ["/traverse?code=slant&rows=3&seed=11&c1=4", "/generate?c1=2&thickness=0.5&n=3&seed=11"])
def test_a_seeded_answer_is_immutable_and_revalidates_with_304_without_computing(http, path):
    first = http.get(path)
    assert first.status_code == 200 and first.headers["content-type"] == "image/png"
    tag = first.headers["etag"]
    assert re.fullmatch(r'"[0-9a-f]{32}"', tag)  # strong
    assert first.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert first.headers["vary"] == "Accept"
    assert http.get(path).content == first.content and http.get(path).headers["etag"] == tag
    runs = generator_runs(http)
    for header in (tag, f"W/{tag}", f'"nope", {tag}', "*"):
        again = http.get(path, headers={"If-None-Match": header})
        assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == tag
    assert generator_runs(http) == runs  # nothing was queued for a 304
    assert http.get(path, headers={"If-None-Match": '"other"'}).status_code == 200


def test_the_tag_names_the_request_and_its_format(http):
    tags = {http.get(path, headers=headers).headers["etag"] for path, headers in [
        ("/traverse?code=slant&rows=2&seed=1", {}),
        ("/traverse?code=slant&rows=2&seed=2", {}),
        ("/traverse?code=2&rows=2&seed=1&steps=10", {}),  # the same grid asked another way: the same tag
        ("/traverse?code=slant&rows=2&seed=1", {"Accept": "application/json"}),
        ("/traverse?code=slant&rows=2&seed=1&c1=3", {}),
    ]}
    assert len(tags) == 4


def test_a_drawn_seed_is_not_stored(http):
    for path in ("/traverse?code=1&rows=1", "/generate?c1=3"):
        answer = http.get(path)
        assert answer.status_code == 200 and answer.headers["cache-control"] == "no-store" and "etag" not in answer.headers


def test_get_generate_gives_the_bytes_of_post_generate(http):
    got = http.get("/generate", params={"c1": 7, "slant": -1.5, "n": 4, "seed": 3})
    posted = http.post("/generate", json={"codes": {"c1": 7, "slant": -1.5}, "n": 4, "seed": 3})
    assert got.content == posted.content and got.headers["x-seed"] == "3"
    labelled = http.get("/generate", params={"label": "7", "seed": 3}, headers={"Accept": "application/json"}).json()
    assert labelled["seed"] == 3 and len(labelled["images"]) == 1
    for params, field in (({"c9": 1}, "c9"), ({"c1": 12}, "c1"), ({"label": "x"}, "label"), ({"n": 65}, "n")):
        answer = http.get("/generate", params=params)
        assert answer.status_code == 422 and field in str(answer.json()["detail"])


def test_tags_depend_on_the_model_and_if_none_match_parsing():
    assert entity_tag("a", "traverse", {"seed": 1}) != entity_tag("b", "traverse", {"seed": 1})
    assert matches('W/"x", "y"', '"y"') and not matches('"x"', '"y"') and not matches(None, '"y"')
