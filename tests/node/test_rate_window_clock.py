"""A rate window and the rows it counts read one clock: the node's injected clock stamps the
store's rows (appliance/storage/database.py) and the payload reader's windows
(appliance/signing/reading.py), so a test moves time instead of sleeping through a window."""

from __future__ import annotations

from appliance.signing.reading import PayloadReader
from appliance.storage import NodeStore
from tests.node.fakes import FakeClock, FakePorts, Users, fake_runtime

KEY = "key_" + "c" * 24
HOUR = 3600


def test_a_reservation_leaves_the_rate_window_when_the_injected_clock_passes_it(tmp_path):
    clock = FakeClock()
    store = NodeStore(tmp_path / "node.db", clock=clock.now)
    rt, ports = fake_runtime(Users().policy, clock=clock), FakePorts(store)
    reader = PayloadReader(rt, replay=ports.slot("replay"))
    assert store.mark_request("req_" + "1" * 32, KEY, [0, 1])
    clock.t += HOUR - 1
    assert store.mark_request("req_" + "2" * 32, KEY, [0, 1])
    assert reader.rate_usage(KEY, HOUR) == 2
    assert reader.rate_usage(KEY, HOUR, besides="req_" + "2" * 32) == 1
    clock.t += 2  # the first reservation is now older than the window; the second is not
    assert reader.rate_usage(KEY, HOUR) == 1
    clock.t += HOUR
    assert reader.rate_usage(KEY, HOUR) == 0
    store.close()


def test_amounts_leave_their_window_on_the_injected_clock(tmp_path):
    clock = FakeClock()
    store = NodeStore(tmp_path / "node.db", clock=clock.now)
    assert store.use_request("req_" + "3" * 32, "sign", KEY, "job_" + "3" * 24, amounts={"BTC": 5000})
    assert store.amounts_since(KEY, clock.now() - 60) == {"BTC": 5000}
    clock.t += 61
    assert store.amounts_since(KEY, clock.now() - 60) == {}
    store.close()
