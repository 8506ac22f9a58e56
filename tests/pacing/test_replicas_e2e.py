"""Four proxy processes, one real redis-server, one fake SES enforcing MaxSendRate.

Shared: together they stay within the account's rate. Redis killed mid-burst: each
goes on alone at its share, nothing lost, nothing sent twice. Redis back (same port,
empty): they share again.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

from tests.conftest import StartProxy
from tests.fakes.aws import FakeAWS
from tests.harness import RunningProxy
from tests.pacing.e2e import burst, subjects_sent, throttles, wait_for
from tests.pacing.redis_server import RedisServer

RATE = 10.0
REPLICAS = 4
MAX_WAIT = 30.0


def shared_up(proxy: RunningProxy) -> float:
    return proxy.metric("sesproxy_rate_shared_budget_up")


def test_four_replicas_share_one_budget_through_redis_and_survive_its_loss(
    start_ses_proxy: StartProxy, fake_aws: FakeAWS, redis_server: RedisServer
) -> None:
    fake_aws.enforce_rate = True
    fake_aws.max_send_rate = RATE
    config = {"rate": {"backend": "redis", "redis_url": redis_server.url}}
    proxies = [start_ses_proxy(config) for _ in range(REPLICAS)]
    ports = [proxy.smtp_port for proxy in proxies]
    assert [shared_up(proxy) for proxy in proxies] == [1.0] * REPLICAS

    # 1. One budget: 40 recipients at 10/s take about three seconds whoever sends them
    #    (four separate buckets would let them all through in one, and be throttled).
    shared = burst(ports, count=40, clients=12, prefix="shared")
    assert [o.code for o in shared] == [250] * 40
    assert throttles(fake_aws) == 0
    finished = sorted(o.finished for o in shared)
    assert 2.5 <= finished[-1] - finished[0] <= 5.0
    assert max(o.finished - o.started for o in shared) < MAX_WAIT

    # 2. Redis dies mid-burst: each replica goes on at its share; SES may throttle
    #    around the switch, which the retry absorbs.
    killer = threading.Timer(1.0, redis_server.kill)
    killer.start()
    alone = burst(ports, count=40, clients=12, prefix="alone")
    killer.join()
    assert [o.code for o in alone] == [250] * 40
    assert max(o.finished - o.started for o in alone) < MAX_WAIT
    assert [shared_up(proxy) for proxy in proxies] == [0.0] * REPLICAS
    for proxy in proxies:
        [down] = proxy.events("shared_budget_down")
        assert down["share"] == 1 / REPLICAS
        # Each paces at a quarter of the rate while alone.
        assert proxy.metric("sesproxy_rate_limit_recipients_per_second") <= RATE / REPLICAS

    # 3. Redis back on the same port, empty: the next message of each replica finds it.
    redis_server.start()
    time.sleep(1.1)  # the fallback asks Redis again at most once a second
    back = burst(ports, count=REPLICAS, clients=REPLICAS, prefix="back")
    assert [o.code for o in back] == [250] * REPLICAS
    wait_for(
        lambda: [shared_up(proxy) for proxy in proxies] == [1.0] * REPLICAS,
        5,
        "every replica uses the shared budget again",
    )
    for proxy in proxies:
        assert len(proxy.events("shared_budget_down")) == 1

    # Nothing lost, nothing twice: each message reached SES exactly once.
    tags = subjects_sent(fake_aws)
    assert max(Counter(tags).values()) == 1
    assert sorted(tags) == sorted(o.tag for o in shared + alone + back)
