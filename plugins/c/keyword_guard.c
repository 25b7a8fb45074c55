/* keyword_guard: a keyword guardrail in C.
 *
 * Config (JSON):
 *   {"deny": ["falcon"], "redact": ["acme"], "stop": ["classified"]}
 * - a request mentioning a `deny` word is refused (403);
 * - `redact` words are replaced with [REDACTED] in requests and complete answers;
 * - a streamed answer that mentions a `stop` word is cut off (also across chunk boundaries,
 *   using the tail of text already sent that the host passes in). */
#include "tollgate_sdk.h"

static tg_words deny, redact, stop;

bool exports_tollgate_plugin_hooks_init(tg_str *config, exports_tollgate_plugin_hooks_hook_set_t *ret, tg_str *err) {
  tg_json_words(config, "deny", &deny);
  tg_json_words(config, "redact", &redact);
  tg_json_words(config, "stop", &stop);
  plugin_string_free(config);
  if (deny.count + redact.count + stop.count == 0) {
    *err = tg_dup_c("keyword_guard: configure at least one of deny, redact, stop");
    return false;
  }
  *ret = TOLLGATE_PLUGIN_TYPES_HOOK_SET_ON_REQUEST | TOLLGATE_PLUGIN_TYPES_HOOK_SET_ON_RESPONSE |
         TOLLGATE_PLUGIN_TYPES_HOOK_SET_ON_CHUNK;
  return true;
}

/* `text` with every redact word replaced, as a new string; `changed` says whether any was. */
static tg_str redacted(const tg_str *text, bool *changed) {
  const char *mark = "[REDACTED]";
  size_t cap = text->len * 2 + 16, n = 0;
  char *out = tg_alloc(cap);
  const char *s = (const char *)text->ptr;
  size_t i = 0;
  *changed = false;
  while (i < text->len) {
    size_t hit = 0;
    for (int w = 0; w < redact.count && !hit; w++)
      if (redact.lens[w] <= text->len - i && tg_find_ci(s + i, redact.lens[w], redact.words[w], redact.lens[w]) == 0)
        hit = redact.lens[w];
    if (hit) {
      if (n + 10 >= cap) out = tg_realloc(out, cap *= 2);
      memcpy(out + n, mark, 10);
      n += 10;
      i += hit;
      *changed = true;
    } else {
      if (n + 1 >= cap) out = tg_realloc(out, cap *= 2);
      out[n++] = s[i++];
    }
  }
  if (n == 0) {
    /* An empty string is returned without memory: the bindings free only non-empty ones. */
    free(out);
    out = NULL;
  }
  tg_str r = {(uint8_t *)out, n};
  return r;
}

void exports_tollgate_plugin_hooks_on_request(exports_tollgate_plugin_hooks_request_t *req, exports_tollgate_plugin_hooks_verdict_t *ret) {
  ret->tag = TOLLGATE_PLUGIN_TYPES_VERDICT_ALLOW;
  for (size_t i = 0; i < req->messages.len; i++) {
    tg_str *t = &req->messages.ptr[i].text;
    int w = tg_first_word(&deny, (const char *)t->ptr, t->len);
    if (w >= 0) {
      ret->tag = TOLLGATE_PLUGIN_TYPES_VERDICT_DENY;
      ret->val.deny.status = 403;
      ret->val.deny.message = tg_concat3("keyword_guard: the request mentions \"", deny.words[w], "\"");
      tg_metric("denied", 1);
      tollgate_plugin_types_request_free(req);
      return;
    }
  }
  bool any_to_redact = false;
  for (size_t i = 0; i < req->messages.len && !any_to_redact; i++)
    any_to_redact = tg_first_word(&redact, (const char *)req->messages.ptr[i].text.ptr, req->messages.ptr[i].text.len) >= 0;
  if (any_to_redact) {
    bool any = false;
    tollgate_plugin_types_message_t *msgs = tg_alloc(req->messages.len * sizeof *msgs);
    for (size_t i = 0; i < req->messages.len; i++) {
      bool changed;
      msgs[i].role = tg_dup((const char *)req->messages.ptr[i].role.ptr, req->messages.ptr[i].role.len);
      msgs[i].text = redacted(&req->messages.ptr[i].text, &changed);
      any |= changed;
    }
    if (any) {
      tollgate_plugin_types_modification_t *m = &ret->val.modify;
      memset(m, 0, sizeof *m);
      ret->tag = TOLLGATE_PLUGIN_TYPES_VERDICT_MODIFY;
      m->messages.is_some = true;
      m->messages.val.ptr = msgs;
      m->messages.val.len = req->messages.len;
      tg_metric("redacted", 1);
      tg_log(TOLLGATE_PLUGIN_TYPES_LEVEL_INFO, "keyword_guard: redacted the request");
    } else {
      tollgate_plugin_types_list_message_t list = {msgs, req->messages.len};
      tollgate_plugin_types_list_message_free(&list);
    }
  }
  tollgate_plugin_types_request_free(req);
}

void exports_tollgate_plugin_hooks_on_response(exports_tollgate_plugin_hooks_request_t *req, exports_tollgate_plugin_hooks_response_t *resp, exports_tollgate_plugin_hooks_response_verdict_t *ret) {
  bool changed = false;
  ret->tag = TOLLGATE_PLUGIN_TYPES_RESPONSE_VERDICT_ALLOW;
  if (redact.count > 0) {
    tg_str r = redacted(&resp->text, &changed);
    if (changed) {
      ret->tag = TOLLGATE_PLUGIN_TYPES_RESPONSE_VERDICT_REPLACE;
      ret->val.replace = r;
    } else {
      plugin_string_free(&r);
    }
  }
  tollgate_plugin_types_request_free(req);
  tollgate_plugin_types_response_free(resp);
}

void exports_tollgate_plugin_hooks_on_chunk(exports_tollgate_plugin_hooks_request_t *req, tg_str *chunk, exports_tollgate_plugin_hooks_stream_state_t *state, exports_tollgate_plugin_hooks_chunk_verdict_t *ret) {
  /* The tail of what was sent plus this chunk, so a word split across chunks is seen. */
  size_t n = state->tail.len + chunk->len;
  char *window = tg_alloc(n);
  memcpy(window, state->tail.ptr, state->tail.len);
  memcpy(window + state->tail.len, chunk->ptr, chunk->len);
  int w = tg_first_word(&stop, window, n);
  ret->tag = TOLLGATE_PLUGIN_TYPES_CHUNK_VERDICT_PASS;
  if (w >= 0) {
    ret->tag = TOLLGATE_PLUGIN_TYPES_CHUNK_VERDICT_STOP;
    ret->val.stop = tg_concat3("keyword_guard: the answer mentions \"", stop.words[w], "\"");
  }
  free(window);
  tollgate_plugin_types_request_free(req);
  plugin_string_free(chunk);
  tollgate_plugin_types_stream_state_free(state);
}

TG_NEUTRAL_SCORE

TG_NEUTRAL_ROUTE
