"""`examples/keys.toml` with the official `openai` SDK: a key made through the admin API works
at once, its own budget runs out with a clean 402, rotation and revocation refuse the old
secret at once, and the spend report adds up to what the answers said they cost.
"""

import json
import tempfile
import time
import urllib.error
import urllib.request

import openai
import pytest

from conftest import serve_example

ADMIN_KEY = "py-admin-key-0123456789abcdef"
MESSAGES = [{"role": "user", "content": "Tell me about keys."}]


def admin(admin_port, method, path, body=None, key=ADMIN_KEY):
    data = json.dumps(body).encode() if body is not None else None
    headers = {"content-type": "application/json"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    req = urllib.request.Request(f"http://127.0.0.1:{admin_port}{path}", data=data,
                                 method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture
def keys():
    tmp = tempfile.TemporaryDirectory()
    gw, port, admin_port = serve_example("keys.toml", tmp.name,
                                         TOLLGATE_ADMIN_KEY=ADMIN_KEY,
                                         TOLLGATE_DATA_DIR=f"{tmp.name}/data")

    class Keys:
        pass

    k = Keys()
    k.admin = lambda method, path, body=None, key=ADMIN_KEY: admin(admin_port, method, path,
                                                                   body, key)
    k.client = lambda key: openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key,
                                         max_retries=0)
    yield k
    gw.terminate()
    gw.wait(timeout=10)
    tmp.cleanup()


def test_the_admin_api_wants_its_own_key(keys):
    status, body = keys.admin("GET", "/admin/keys", key=None)
    assert status == 401 and body["error"]["code"] == "missing_admin_key"
    status, _ = keys.admin("GET", "/admin/keys", key="sk-not-the-admin-key")
    assert status == 401
    # With admin-managed keys, clients always need one, even before the first is made.
    with pytest.raises(openai.AuthenticationError):
        keys.client("sk-anything").chat.completions.create(model="chat", messages=MESSAGES)


def test_a_made_key_works_runs_out_rotates_and_is_revoked(keys):
    status, made = keys.admin("POST", "/admin/keys", {
        "name": "alice", "tenant": "acme", "team": "search",
        "budget_usd": 0.0005, "period": "daily"})
    assert status == 201, made
    secret = made["key"]
    alice = keys.client(secret)

    charged = 0.0
    with pytest.raises(openai.APIStatusError) as refused:
        for _ in range(500):
            raw = alice.chat.completions.with_raw_response.create(
                model="chat", messages=MESSAGES, max_tokens=64)
            charged += float(raw.headers["x-tollgate-cost-usd"])
    assert refused.value.status_code == 402
    assert refused.value.code == "budget_exceeded"
    assert 0 < charged <= 0.0005

    # More budget, set on the live key, lets it go on at once.
    status, updated = keys.admin("PATCH", "/admin/keys/alice", {"budget_usd": 1})
    assert status == 200 and updated["budget_usd"] == "1" and updated["period"] == "daily"
    raw = alice.chat.completions.with_raw_response.create(model="chat", messages=MESSAGES,
                                                          max_tokens=64)
    charged += float(raw.headers["x-tollgate-cost-usd"])

    status, rotated = keys.admin("POST", "/admin/keys/alice/rotate")
    assert status == 200 and rotated["key"] != secret
    with pytest.raises(openai.AuthenticationError):
        alice.chat.completions.create(model="chat", messages=MESSAGES)
    alice = keys.client(rotated["key"])
    raw = alice.chat.completions.with_raw_response.create(model="chat", messages=MESSAGES,
                                                          max_tokens=64)
    charged += float(raw.headers["x-tollgate-cost-usd"])

    status, _ = keys.admin("POST", "/admin/keys/alice/revoke")
    assert status == 200
    with pytest.raises(openai.AuthenticationError) as gone:
        alice.chat.completions.create(model="chat", messages=MESSAGES)
    assert "revoked" in str(gone.value)

    # The ledger is written in batches: the report catches up within moments.
    deadline = time.time() + 5
    while True:
        status, report = keys.admin("GET", "/admin/spend?by=team")
        assert status == 200
        search = [r for r in report["rows"] if r["group"] == "search"]
        if search and abs(float(search[0]["cost_usd"]) - charged) < 1e-12:
            break
        assert time.time() < deadline, (report, charged)
        time.sleep(0.05)

    status, listed = keys.admin("GET", "/admin/keys")
    alice_row = next(k for k in listed["keys"] if k["name"] == "alice")
    assert alice_row["revoked"] is True and "key" not in alice_row
