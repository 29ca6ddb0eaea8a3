"""No vendor API key appears in any response, event or log line of the whole run.

Named to run after the other integration tests, so it judges everything they made: every log
record of this process, every response the stack's clients read, the worker processes' log files
and every event in the board streams. It also makes each vendor fail on its key and succeed, so it
checks something even when run alone."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from tests.fixtures.generation import wait_final
from tests.fixtures.stack import Account, Stack
from tests.fixtures.vendor_catalog import VENDORS, Vendors
from tests.integration.test_vendors import start

pytestmark = pytest.mark.integration


def test_no_api_key_in_any_response_event_or_log_line(stack: Stack, account: Account, board: dict[str, Any],
                                                      vendors: Vendors) -> None:
    runs = [start(account, board["id"], vendor, scenario) for vendor in VENDORS for scenario in ("auth", "ok")]
    for s in runs:
        wait_final(account.client, s.gen_id, timeout=120)
    watch = vendors.watch
    assert watch.seen["log"] > 0 and watch.seen["response"] > 0
    for path in watch.files:
        if path.exists():
            watch.check("log", path.read_text(errors="replace"))
    client = redis.Redis.from_url(stack.settings.redis_url)
    try:
        streams = list(client.scan_iter(match="easel:board:*:events", count=1000))
        assert streams
        for key in streams:
            for _id, fields in client.xrange(key):
                watch.check("event", b" ".join(fields.values()).decode(errors="replace"))
    finally:
        client.close()
    assert watch.seen["event"] > 0
    assert watch.leaks == []
