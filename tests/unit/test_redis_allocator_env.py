"""The environment a Redis YADTQ starts gets: glibc's per-thread cache made deeper, a user's own
setting kept (yadtq.ops.redis_allocator)."""

from __future__ import annotations

from yadtq.ops.redis_allocator import TCACHE_COUNT, redis_environment


def test_the_cache_depth_is_added_to_an_environment_without_tunables() -> None:
    env = redis_environment({"PATH": "/bin"})
    assert env == {"PATH": "/bin", "GLIBC_TUNABLES": f"glibc.malloc.tcache_count={TCACHE_COUNT}"}


def test_other_tunables_the_user_set_are_kept_beside_it() -> None:
    env = redis_environment({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"})
    assert env["GLIBC_TUNABLES"] == f"glibc.malloc.arena_max=2:glibc.malloc.tcache_count={TCACHE_COUNT}"


def test_a_cache_depth_the_user_set_wins() -> None:
    own = "glibc.malloc.mxfast=0:glibc.malloc.tcache_count=16"
    assert redis_environment({"GLIBC_TUNABLES": own})["GLIBC_TUNABLES"] == own
    # A tunable whose name only starts the same is another one.
    longer = "glibc.malloc.tcache_count_max=3"
    assert redis_environment({"GLIBC_TUNABLES": longer})["GLIBC_TUNABLES"] == \
        f"{longer}:glibc.malloc.tcache_count={TCACHE_COUNT}"


def test_the_callers_environment_is_not_changed() -> None:
    base = {"GLIBC_TUNABLES": ""}
    assert redis_environment(base)["GLIBC_TUNABLES"] == f"glibc.malloc.tcache_count={TCACHE_COUNT}"
    assert base == {"GLIBC_TUNABLES": ""}
