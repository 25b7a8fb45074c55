"""pii_redactor: a PII redactor with custom rules, in Python (componentize-py).

Config (JSON):
    {"rules": {"EMPLOYEE_ID": "EMP-[0-9]{6}", "REDACTED": "(?i)acme"},
     "deny": ["falcon"], "stop": ["answer"]}

- Emails and phone numbers, plus each custom rule's regex, are replaced with [LABEL] in
  requests and complete answers;
- a request mentioning a `deny` word is refused (403);
- a streamed answer mentioning a `stop` word is cut off.
"""

import json
import re

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host, types

# The config, set by `init`. Module state, not instance attributes: componentize-py makes a
# new `Hooks` object for every call, while the module lives as long as the instance.
RULES = []
DENY = []
STOP = []

BUILT_IN = {
    "EMAIL": r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}",
    "PHONE": r"\+?\d[\d ().-]{7,}\d",
}


class Hooks(exports.Hooks):
    def init(self, config: str) -> types.HookSet:
        try:
            cfg = json.loads(config or "{}")
            rules = {**BUILT_IN, **cfg.get("rules", {})}
            RULES[:] = [(label, re.compile(p)) for label, p in rules.items()]
        except (ValueError, re.error) as e:
            raise Err(f"pii_redactor: bad config: {e}")
        # Empty words would match everything.
        DENY[:] = [w.lower() for w in cfg.get("deny", []) if w]
        STOP[:] = [w.lower() for w in cfg.get("stop", []) if w]
        return (types.HookSet.ON_REQUEST | types.HookSet.ON_RESPONSE
                | types.HookSet.ON_CHUNK)

    def redact(self, text: str) -> str:
        for label, pattern in RULES:
            text = pattern.sub(f"[{label}]", text)
        return text

    def on_request(self, req: types.Request) -> types.Verdict:
        for m in req.messages:
            lower = m.text.lower()
            for word in DENY:
                if word in lower:
                    host.metric("denied", 1)
                    return types.Verdict_Deny(types.Denial(
                        403, f"pii_redactor: the request mentions \"{word}\""))
        redacted = [types.Message(m.role, self.redact(m.text)) for m in req.messages]
        if all(r.text == m.text for r, m in zip(redacted, req.messages)):
            return types.Verdict_Allow()
        host.log(types.Level.INFO, "pii_redactor: redacted the request")
        host.metric("redacted", 1)
        return types.Verdict_Modify(types.Modification(redacted, None, None, None))

    def on_response(self, req: types.Request, resp: types.Response) -> types.ResponseVerdict:
        text = self.redact(resp.text)
        if text == resp.text:
            return types.ResponseVerdict_Allow()
        return types.ResponseVerdict_Replace(text)

    def on_chunk(self, req: types.Request, chunk: str,
                 state: types.StreamState) -> types.ChunkVerdict:
        window = (state.tail + chunk).lower()
        for word in STOP:
            if word in window:
                return types.ChunkVerdict_Stop(f"pii_redactor: the answer mentions \"{word}\"")
        return types.ChunkVerdict_Pass()

    def score(self, req: types.Request, resp: types.Response) -> float:
        return 1.0

    def route(self, req: types.Request, candidates):
        return None
