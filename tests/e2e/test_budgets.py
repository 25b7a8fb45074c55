"""`examples/budgets.toml` with the official `openai` SDK: a $0.05 budget runs out, the client
gets a clean 402 it is told not to retry, and an unlimited key keeps working. Streams are
priced like complete answers.
"""

import tempfile
import time

import openai
import pytest

from conftest import serve_example
from test_chaos import Mock, http

MESSAGES = [{"role": "user", "content": "Tell me about budgets."}]


def settled(report):
    """The budget once nothing is reserved (a stream settles just after its last byte)."""
    deadline = time.time() + 5
    while time.time() < deadline:
        r = report()
        if float(r["reserved_usd"]) == 0:
            return r
        time.sleep(0.02)
    pytest.fail("reservations never settled")


@pytest.fixture
def budgets():
    upstream = Mock()
    tmp = tempfile.TemporaryDirectory()
    gw, port, admin = serve_example("budgets.toml", tmp.name,
                                    TOLLGATE_UPSTREAM_URL=f"{upstream.url}/v1",
                                    TOLLGATE_DATA_DIR=f"{tmp.name}/data")

    class Budgets:
        pass

    b = Budgets()
    client = lambda key: openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key,
                                       max_retries=2)
    b.budget, b.demo = client("sk-budget"), client("sk-demo")
    b.report = lambda: http("GET", f"http://127.0.0.1:{admin}/admin/budgets")["budgets"][0]
    b.settled = lambda: settled(b.report)
    yield b
    gw.terminate()
    gw.wait(timeout=10)
    upstream.stop()
    tmp.cleanup()


def test_a_budget_runs_out_cleanly_and_other_keys_keep_working(budgets):
    costs = []
    with pytest.raises(openai.APIStatusError) as refused:
        for _ in range(1000):
            raw = budgets.budget.chat.completions.with_raw_response.create(
                model="metered", messages=MESSAGES, max_tokens=32)
            costs.append(float(raw.headers["x-tollgate-cost-usd"]))
    err = refused.value
    assert err.status_code == 402
    assert err.body["code"] == "budget_exceeded"
    assert err.body["type"] == "insufficient_quota"
    assert err.response.headers["x-should-retry"] == "false"
    # The SDK did not retry it (max_retries=2 would have sent it three times).
    assert len(costs) > 0
    report = budgets.settled()
    assert report["limit_usd"] == "0.05"
    assert float(report["spent_usd"]) == pytest.approx(sum(costs), abs=1e-12)
    assert float(report["spent_usd"]) <= 0.05
    # No budget on sk-demo.
    ok = budgets.demo.chat.completions.create(model="metered", messages=MESSAGES)
    assert ok.choices[0].message.content


def test_a_stream_costs_what_the_same_complete_answer_costs(budgets):
    raw = budgets.budget.chat.completions.with_raw_response.create(
        model="metered", messages=MESSAGES, max_tokens=32)
    one = float(raw.headers["x-tollgate-cost-usd"])
    assert one > 0
    stream = budgets.budget.chat.completions.create(
        model="metered", messages=MESSAGES, max_tokens=32, stream=True)
    chunks = list(stream)
    assert chunks and all(c.usage is None for c in chunks), "no usage chunk was asked for"
    report = budgets.settled()
    assert float(report["spent_usd"]) == pytest.approx(2 * one, abs=1e-12)
