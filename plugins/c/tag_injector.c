/* tag_injector: tags requests for the ledger and spend reports, in C.
 *
 * Config (JSON): {"tags": ["team-search", "beta"], "long_prompt_tokens": 2000}
 * Every request gets the configured tags, plus "long-prompt" when its estimated prompt is
 * over `long_prompt_tokens` (default 4000), and a `tagged` counter is bumped. */
#include "tollgate_sdk.h"

static tg_words tags;
static uint32_t long_prompt = 4000;

bool exports_tollgate_plugin_hooks_init(tg_str *config, exports_tollgate_plugin_hooks_hook_set_t *ret, tg_str *err) {
  (void)err;
  tg_json_words(config, "tags", &tags);
  long at = tg_find_ci((const char *)config->ptr, config->len, "\"long_prompt_tokens\"", 20);
  if (at >= 0) {
    const char *p = (const char *)config->ptr + at + 20, *end = (const char *)config->ptr + config->len;
    while (p < end && (*p < '0' || *p > '9')) p++;
    uint32_t n = 0;
    while (p < end && *p >= '0' && *p <= '9') n = n * 10 + (uint32_t)(*p++ - '0');
    if (n > 0) long_prompt = n;
  }
  plugin_string_free(config);
  *ret = TOLLGATE_PLUGIN_TYPES_HOOK_SET_ON_REQUEST;
  return true;
}

void exports_tollgate_plugin_hooks_on_request(exports_tollgate_plugin_hooks_request_t *req, exports_tollgate_plugin_hooks_verdict_t *ret) {
  bool is_long = req->token_estimate > long_prompt;
  size_t n = (size_t)tags.count + (is_long ? 1 : 0);
  tollgate_plugin_types_request_free(req);
  if (n == 0) {
    ret->tag = TOLLGATE_PLUGIN_TYPES_VERDICT_ALLOW;
    return;
  }
  tollgate_plugin_types_modification_t *m = &ret->val.modify;
  memset(m, 0, sizeof *m);
  ret->tag = TOLLGATE_PLUGIN_TYPES_VERDICT_MODIFY;
  m->tags.is_some = true;
  m->tags.val.len = n;
  m->tags.val.ptr = tg_alloc(n * sizeof(tg_str));
  for (int i = 0; i < tags.count; i++) m->tags.val.ptr[i] = tg_dup(tags.words[i], tags.lens[i]);
  if (is_long) m->tags.val.ptr[tags.count] = tg_dup_c("long-prompt");
  tg_metric("tagged", 1);
}

TG_NEUTRAL_ON_RESPONSE

TG_NEUTRAL_ON_CHUNK

TG_NEUTRAL_SCORE

TG_NEUTRAL_ROUTE
