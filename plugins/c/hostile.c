/* hostile: a plugin that misbehaves on purpose, to test the host's limits.
 *
 * Config (JSON): {"mode": "loop"}, {"mode": "grow"}, {"mode": "trap"} or {"mode": "ok"}.
 * In on-request: `loop` never returns, `grow` allocates until memory runs out, `trap`
 * aborts; `ok` allows the request. Not an example to copy. */
#include "tollgate_sdk.h"

static char mode = 'o';

bool exports_tollgate_plugin_hooks_init(tg_str *config, exports_tollgate_plugin_hooks_hook_set_t *ret, tg_str *err) {
  (void)err;
  if (tg_find_ci((const char *)config->ptr, config->len, "\"loop\"", 6) >= 0) mode = 'l';
  if (tg_find_ci((const char *)config->ptr, config->len, "\"grow\"", 6) >= 0) mode = 'g';
  if (tg_find_ci((const char *)config->ptr, config->len, "\"trap\"", 6) >= 0) mode = 't';
  plugin_string_free(config);
  *ret = TOLLGATE_PLUGIN_TYPES_HOOK_SET_ON_REQUEST;
  return true;
}

static volatile uint64_t spins;
/* Where grown blocks are kept, so the compiler cannot drop the allocations. */
static char *volatile last_block;

void exports_tollgate_plugin_hooks_on_request(exports_tollgate_plugin_hooks_request_t *req, exports_tollgate_plugin_hooks_verdict_t *ret) {
  tollgate_plugin_types_request_free(req);
  ret->tag = TOLLGATE_PLUGIN_TYPES_VERDICT_ALLOW;
  if (mode == 'l') {
    for (;;) spins++;
  } else if (mode == 'g') {
    for (;;) {
      char *block = malloc(1 << 20);
      if (!block) abort();
      memset(block, 1, 1 << 20);
      last_block = block;
    }
  } else if (mode == 't') {
    __builtin_trap();
  }
}

void exports_tollgate_plugin_hooks_on_response(exports_tollgate_plugin_hooks_request_t *req, exports_tollgate_plugin_hooks_response_t *resp, exports_tollgate_plugin_hooks_response_verdict_t *ret) {
  ret->tag = TOLLGATE_PLUGIN_TYPES_RESPONSE_VERDICT_ALLOW;
  tollgate_plugin_types_request_free(req);
  tollgate_plugin_types_response_free(resp);
}

void exports_tollgate_plugin_hooks_on_chunk(exports_tollgate_plugin_hooks_request_t *req, tg_str *chunk, exports_tollgate_plugin_hooks_stream_state_t *state, exports_tollgate_plugin_hooks_chunk_verdict_t *ret) {
  ret->tag = TOLLGATE_PLUGIN_TYPES_CHUNK_VERDICT_PASS;
  tollgate_plugin_types_request_free(req);
  plugin_string_free(chunk);
  tollgate_plugin_types_stream_state_free(state);
}

float exports_tollgate_plugin_hooks_score(exports_tollgate_plugin_hooks_request_t *req, exports_tollgate_plugin_hooks_response_t *resp) {
  tollgate_plugin_types_request_free(req);
  tollgate_plugin_types_response_free(resp);
  return 1.0f;
}

bool exports_tollgate_plugin_hooks_route(exports_tollgate_plugin_hooks_request_t *req, exports_tollgate_plugin_hooks_list_target_t *candidates, exports_tollgate_plugin_hooks_list_target_t *ret) {
  (void)ret;
  tollgate_plugin_types_request_free(req);
  exports_tollgate_plugin_hooks_list_target_free(candidates);
  return false;
}
