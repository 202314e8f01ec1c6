"""Lifecycle transitions in every order, against the node process: each transition tried from every
primary state (the invalid ones are refused, state unchanged, node keeps answering), every valid edge
taken, output only while active, and each of the three shutdowns, the active one while frames are
streaming and inference is running. Exit code 0 and an intact flight-data record afterwards."""
import itertools
import json
import os
import threading
import time

import pytest

from vpr_node.ros.harness import TRANSITIONS, NodeProcess, VprClient, write_params_file

pytestmark = pytest.mark.process

_domains = itertools.count(160 + (os.getpid() % 40))
VALID = {("unconfigured", "configure"): "inactive", ("inactive", "cleanup"): "unconfigured",
         ("inactive", "activate"): "active", ("active", "deactivate"): "inactive",
         ("unconfigured", "shutdown_unconfigured"): "finalized", ("inactive", "shutdown"): "finalized",
         ("active", "shutdown_active"): "finalized"}


class Node:
    def __init__(self, tmp_path, index_dir):
        self.domain = next(_domains)
        self.fdr = tmp_path / f"fdr_{self.domain}.jsonl"
        params = {"backbone": "efficientnet_lite0_gem", "backbone_options": '{"input_size": 160}', "top_k": 5,
                  "index_dir": str(index_dir), "recorder_path": str(self.fdr), "diagnostics_period": 0.5}
        self.proc = NodeProcess(write_params_file(tmp_path / f"p_{self.domain}.yaml", params),
                                tmp_path / f"node_{self.domain}.log", self.domain)
        self.c = VprClient(self.domain)
        self.c.wait_for_node(60)

    def step(self, name: str) -> str:
        before = self.c.state()
        ok = self.c.transition(name)
        expected = VALID.get((before, name))
        after = self.c.state()
        assert ok == (expected is not None), (before, name, self.proc.log_text()[-1500:])
        assert after == (expected or before), (before, name, after)
        assert self.proc.alive()
        return after

    def refuse_all_invalid(self) -> None:
        state = self.c.state()
        for name in TRANSITIONS:
            if (state, name) not in VALID:
                self.step(name)

    def serves(self, rgb) -> bool:
        self.c.drain(self.c.results)
        self.c.publish(self.c.make_image(rgb, time.time_ns()))
        return self.c.next_result(timeout=4 if self.c.state() != "active" else 30) is not None

    def close(self) -> int:
        self.c.close()
        return self.proc.stop()


@pytest.fixture
def node(tmp_path, gem_index_dir):
    n = Node(tmp_path, gem_index_dir)
    yield n
    n.c.close() if n.c.context.ok() else None
    n.proc.stop()


def _records_intact(path) -> list[dict]:
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(x) for x in lines]  # every line is a whole JSON record


def test_every_transition_from_every_state_then_active_shutdown_during_inference(node, sample_queries):
    img = sample_queries[0].image
    path = ["configure", "cleanup", "configure", "activate", "deactivate", "activate"]
    for name in path:
        node.refuse_all_invalid()
        state = node.step(name)
        if state == "active":
            assert node.c.wait_subscribed(10)
        assert node.serves(img) == (state == "active")
    node.refuse_all_invalid()

    stop = threading.Event()

    def stream():  # 30 Hz, faster than the node embeds: inference is running when shutdown arrives
        i = 0
        while not stop.is_set():
            node.c.publish(node.c.make_image(sample_queries[i % len(sample_queries)].image, time.time_ns()))
            i += 1
            time.sleep(1 / 30)

    t = threading.Thread(target=stream, daemon=True)
    t.start()
    try:
        assert node.c.next_result(timeout=30) is not None  # the engine is busy
        t0 = time.monotonic()
        assert node.step("shutdown_active") == "finalized"
        assert time.monotonic() - t0 < 15
    finally:
        stop.set()
        t.join(2)
    node.refuse_all_invalid()  # finalized: every transition refused
    node.c.drain(node.c.results)
    time.sleep(1.0)
    assert node.c.next_result(timeout=2) is None  # no output after shutdown
    assert node.close() == 0
    log = node.proc.log_text()
    assert "Traceback" not in log, log[-3000:]
    kinds = [r["kind"] for r in _records_intact(node.fdr)]
    assert "c2.vpr.embed_query" in kinds


@pytest.mark.parametrize("via", ["shutdown_unconfigured", "shutdown"])
def test_shutdown_from_unconfigured_and_inactive(node, via):
    if via == "shutdown":
        node.step("configure")
    node.refuse_all_invalid()
    assert node.step(via) == "finalized"
    node.refuse_all_invalid()
    assert node.close() == 0
    assert "Traceback" not in node.proc.log_text()
    # the recorder exists once configure opened it, and holds only whole records (shutdown closed it cleanly)
    assert node.fdr.exists() == (via == "shutdown")
    assert all({"t", "kind"} <= set(r) for r in _records_intact(node.fdr))
