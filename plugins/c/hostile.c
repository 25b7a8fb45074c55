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

TG_NEUTRAL_ON_RESPONSE

TG_NEUTRAL_ON_CHUNK

TG_NEUTRAL_SCORE

TG_NEUTRAL_ROUTE
