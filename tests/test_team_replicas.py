"""The team engine with two replicas (issue 17): each user's requests stay on one replica.

A separate module so that its local Ray starts after test_team.py's has stopped (two local Ray
instances at once are not something a user runs). ``slow``: Ray and two model replicas start.
"""

from __future__ import annotations

import json

import pytest
from test_team import CASES, TOKEN, _http, engine_serve

from unmask.engine.infill import Engine


@pytest.fixture(scope="module")
def team2():
    yield from engine_serve("--replicas", "2", "--cpus-per-replica", "0.5", "--threads", "1")


@pytest.mark.slow
def test_each_users_requests_stay_on_one_replica_where_its_caches_are(team2):
    """Ten users ask three times each for one document. With Serve's default routing (the less busy
    of two random replicas) a user's later requests land on the other replica half the time and
    prefill the whole context again there, and newest-wins could not see the older request. With
    the daemon's X-Session-Id, every user stays on one replica and its second and third requests
    reuse the first one's cache; the users are spread over both replicas."""
    pieces, buckets = CASES[1]
    replica_of: dict[str, set[int]] = {}
    for i in range(10):
        eng = Engine({"type": "remote", "url": team2, "token": TOKEN})
        eng.user = f"user-{i}"
        for n in range(3):
            drafts = list(eng.stream_holes(pieces, buckets, budget_ms=20_000, steps=4, cache="file:///same.py"))
            assert drafts and eng.last_engine is not None
            replica_of.setdefault(eng.user, set()).add(eng.last_engine["pid"])
            if n:
                assert eng.last_cache["reused"] > 0 and eng.last_cache["prefilled"] < eng.last_cache["reused"], (
                    eng.user,
                    n,
                    eng.last_cache,
                )
    assert all(len(pids) == 1 for pids in replica_of.values()), replica_of
    assert len(set().union(*replica_of.values())) == 2, replica_of  # both replicas serve (2**-9 to fail by chance)
    stats = json.loads(_http(team2, "GET", "/v1/stats")[1])
    assert stats["pid"] in set().union(*replica_of.values())
