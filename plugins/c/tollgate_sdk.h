/* Small helpers for Tollgate plugins in C, on top of the bindings `wit-bindgen c` generates
 * from plugins/wit/v0.1 (build.sh makes them). Header-only; include after "plugin.h".
 *
 * Ownership, as wit-bindgen's C bindings define it: a hook owns its arguments and must free
 * them before returning (tg_free_request and friends), and what it returns is freed by the
 * host's post-return call. So returned strings must be copies (tg_dup), never pointers into
 * an argument. */
#ifndef TOLLGATE_SDK_H
#define TOLLGATE_SDK_H

#include <stdlib.h>
#include <string.h>
#include "plugin.h"

typedef plugin_string_t tg_str;

/* malloc that aborts (a trap: the host drops the instance) rather than return NULL: in wasm,
 * writing through NULL does not fault, it corrupts memory at address 0. */
static inline void *tg_alloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) abort();
  return p;
}

static inline void *tg_realloc(void *p, size_t n) {
  p = realloc(p, n);
  if (!p) abort();
  return p;
}

/* Frees a string we allocated, empty or not (the bindings' own free skips empty ones). */
static inline void tg_str_free(tg_str *s) {
  free(s->ptr);
  s->ptr = NULL;
  s->len = 0;
}

/* A copy of `len` bytes as a plugin string. */
static inline tg_str tg_dup(const char *s, size_t len) {
  tg_str out;
  plugin_string_dup_n(&out, s, len);
  return out;
}

static inline tg_str tg_dup_c(const char *s) { return tg_dup(s, strlen(s)); }

/* a + b + c as a new plugin string (no stdio: printf would pull in WASI imports). */
static inline tg_str tg_concat3(const char *a, const char *b, const char *c) {
  size_t la = strlen(a), lb = strlen(b), lc = strlen(c);
  tg_str out = {tg_alloc(la + lb + lc + 1), la + lb + lc};
  memcpy(out.ptr, a, la);
  memcpy(out.ptr + la, b, lb);
  memcpy(out.ptr + la + lb, c, lc);
  return out;
}

static inline char tg_lower(char c) { return (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c; }

/* The offset of `needle` in `hay` ignoring ASCII case, or -1. */
static inline long tg_find_ci(const char *hay, size_t hay_len, const char *needle, size_t n) {
  if (n == 0 || n > hay_len) return -1;
  for (size_t i = 0; i + n <= hay_len; i++) {
    size_t j = 0;
    while (j < n && tg_lower(hay[i + j]) == tg_lower(needle[j])) j++;
    if (j == n) return (long)i;
  }
  return -1;
}

/* A list of words from the plugin's JSON config. */
#define TG_MAX_WORDS 32
#define TG_MAX_WORD 64
typedef struct {
  int count;
  char words[TG_MAX_WORDS][TG_MAX_WORD];
  size_t lens[TG_MAX_WORDS];
} tg_words;

/* Reads the array of strings under `"key"` in a flat JSON object (no escapes in the words),
 * e.g. {"deny": ["falcon", "kestrel"]}. Missing keys give an empty list. */
static inline void tg_json_words(const tg_str *json, const char *key, tg_words *out) {
  out->count = 0;
  char quoted[TG_MAX_WORD + 2];
  size_t klen = strlen(key);
  if (klen > TG_MAX_WORD) return;
  quoted[0] = '"';
  memcpy(quoted + 1, key, klen);
  quoted[klen + 1] = '"';
  long at = tg_find_ci((const char *)json->ptr, json->len, quoted, klen + 2);
  if (at < 0) return;
  const char *p = (const char *)json->ptr + at + klen + 2;
  const char *end = (const char *)json->ptr + json->len;
  while (p < end && *p != '[') p++;
  while (p < end && *p != ']' && out->count < TG_MAX_WORDS) {
    if (*p++ != '"') continue;
    const char *start = p;
    while (p < end && *p != '"') p++;
    size_t n = (size_t)(p - start);
    if (n > 0 && n < TG_MAX_WORD) {
      memcpy(out->words[out->count], start, n);
      out->words[out->count][n] = 0;
      out->lens[out->count] = n;
      out->count++;
    }
    p++;
  }
}

/* The index of the first word found in the text, or -1. */
static inline int tg_first_word(const tg_words *w, const char *text, size_t len) {
  for (int i = 0; i < w->count; i++)
    if (tg_find_ci(text, len, w->words[i], w->lens[i]) >= 0) return i;
  return -1;
}

/* A log line through the host (tagged with the plugin and request). */
static inline void tg_log(tollgate_plugin_host_level_t level, const char *message) {
  tg_str m = {(uint8_t *)message, strlen(message)};
  tollgate_plugin_host_log(level, &m);
}

static inline void tg_metric(const char *name, uint64_t delta) {
  tg_str m = {(uint8_t *)name, strlen(name)};
  tollgate_plugin_host_metric(&m, delta);
}

/* Neutral implementations of hooks a plugin does not use (it must still export every hook;
 * `init` says which ones the gateway calls). Write e.g. `TG_NEUTRAL_ON_CHUNK` at file scope. */
#define TG_NEUTRAL_ON_RESPONSE                                                                 \
  void exports_tollgate_plugin_hooks_on_response(exports_tollgate_plugin_hooks_request_t *req,  \
      exports_tollgate_plugin_hooks_response_t *resp,                                           \
      exports_tollgate_plugin_hooks_response_verdict_t *ret) {                                  \
    ret->tag = TOLLGATE_PLUGIN_TYPES_RESPONSE_VERDICT_ALLOW;                                    \
    tollgate_plugin_types_request_free(req);                                                    \
    tollgate_plugin_types_response_free(resp);                                                  \
  }
#define TG_NEUTRAL_ON_CHUNK                                                                    \
  void exports_tollgate_plugin_hooks_on_chunk(exports_tollgate_plugin_hooks_request_t *req,     \
      tg_str *chunk, exports_tollgate_plugin_hooks_stream_state_t *state,                       \
      exports_tollgate_plugin_hooks_chunk_verdict_t *ret) {                                     \
    ret->tag = TOLLGATE_PLUGIN_TYPES_CHUNK_VERDICT_PASS;                                        \
    tollgate_plugin_types_request_free(req);                                                    \
    plugin_string_free(chunk);                                                                  \
    tollgate_plugin_types_stream_state_free(state);                                             \
  }
#define TG_NEUTRAL_SCORE                                                                       \
  float exports_tollgate_plugin_hooks_score(exports_tollgate_plugin_hooks_request_t *req,       \
      exports_tollgate_plugin_hooks_response_t *resp) {                                         \
    tollgate_plugin_types_request_free(req);                                                    \
    tollgate_plugin_types_response_free(resp);                                                  \
    return 1.0f;                                                                                \
  }
#define TG_NEUTRAL_ROUTE                                                                       \
  bool exports_tollgate_plugin_hooks_route(exports_tollgate_plugin_hooks_request_t *req,        \
      exports_tollgate_plugin_hooks_list_target_t *candidates,                                  \
      exports_tollgate_plugin_hooks_list_target_t *ret) {                                       \
    (void)ret;                                                                                  \
    tollgate_plugin_types_request_free(req);                                                    \
    exports_tollgate_plugin_hooks_list_target_free(candidates);                                 \
    return false;                                                                               \
  }

#endif
