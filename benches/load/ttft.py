"""Time to first streamed token through one endpoint: p50 and p99 over N sequential requests."""

import http.client
import json
import sys
import time


def first_token_seconds(host: str, port: int, path: str, body: bytes) -> float:
    conn = http.client.HTTPConnection(host, port, timeout=10)
    headers = {"content-type": "application/json", "authorization": "Bearer sk-demo"}
    start = time.perf_counter()
    conn.request("POST", path, body=body, headers=headers)
    resp = conn.getresponse()
    while True:
        line = resp.readline()
        if not line:
            raise RuntimeError("stream ended before a token")
        if line.startswith(b"data: ") and b'"content":"' in line and b'"content":""' not in line:
            elapsed = time.perf_counter() - start
            break
    resp.read()
    conn.close()
    return elapsed


def main() -> None:
    host, port, path, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    body = json.dumps({"model": "bench", "stream": True,
                       "messages": [{"role": "user", "content": "Hello, how are you?"}]}).encode()
    for _ in range(10):  # warm-up
        first_token_seconds(host, port, path, body)
    samples = sorted(first_token_seconds(host, port, path, body) for _ in range(n))
    print(json.dumps({"p50_ms": samples[n // 2] * 1000, "p99_ms": samples[int(n * 0.99) - 1] * 1000}))


if __name__ == "__main__":
    main()
