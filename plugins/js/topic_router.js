// topic_router: classifies a request's topic, tags it, and routes it, in JavaScript
// (componentize-js). Also a keyword guard, like the other examples.
//
// Config (JSON):
//   {"topics": {"code": ["function", "compile", "rust"]},
//    "prefer": {"code": "mock-large"},
//    "deny": ["falcon"], "redact": ["acme"], "stop": ["answer"]}
//
// - the request is tagged "topic:<name>" for the first topic with a keyword in the prompt;
// - `route` puts the targets whose upstream model is the topic's preferred one first;
// - `deny` words refuse the request (403), `redact` words become [REDACTED] in requests,
//   `stop` words cut a streamed answer off.
import { log, metric } from 'tollgate:plugin/host@0.1.0';

// Set by init. Module state lives as long as the instance.
let config = { topics: {}, prefer: {}, deny: [], redact: [], stop: [] };

const lower = (s) => s.toLowerCase();
const escape = (w) => w.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

function topicOf(req) {
  const text = lower(req.messages.map((m) => m.text).join('\n'));
  for (const [topic, words] of Object.entries(config.topics)) {
    if (words.some((w) => text.includes(lower(w)))) return topic;
  }
  return null;
}

function redact(text) {
  let out = text;
  for (const w of config.redact) out = out.replace(new RegExp(escape(w), 'gi'), '[REDACTED]');
  return out;
}

export const hooks = {
  init(json) {
    let parsed;
    try {
      parsed = JSON.parse(json || '{}');
    } catch (e) {
      throw `topic_router: config is not JSON: ${e}`;
    }
    config = { ...config, ...parsed };
    // Empty words would match everything.
    for (const key of ['deny', 'redact', 'stop']) config[key] = (config[key] || []).filter((w) => w);
    return { onRequest: true, onChunk: true, route: true };
  },

  onRequest(req) {
    for (const m of req.messages) {
      const word = config.deny.find((w) => lower(m.text).includes(lower(w)));
      if (word) {
        metric('denied', 1n);
        return { tag: 'deny', val: { status: 403, message: `topic_router: the request mentions "${word}"` } };
      }
    }
    const topic = topicOf(req);
    const messages = req.messages.map((m) => ({ role: m.role, text: redact(m.text) }));
    const changed = messages.some((m, i) => m.text !== req.messages[i].text);
    if (!topic && !changed) return { tag: 'allow' };
    if (topic) log('debug', `topic_router: topic ${topic}`);
    return {
      tag: 'modify',
      val: {
        messages: changed ? messages : undefined,
        maxTokens: undefined,
        model: undefined,
        tags: topic ? [`topic:${topic}`] : undefined,
      },
    };
  },

  onResponse(req, resp) {
    return { tag: 'allow' };
  },

  onChunk(req, chunk, state) {
    const window = lower(state.tail + chunk);
    const word = config.stop.find((w) => window.includes(lower(w)));
    if (word) return { tag: 'stop', val: `topic_router: the answer mentions "${word}"` };
    return { tag: 'pass' };
  },

  score(req, resp) {
    return 1.0;
  },

  route(req, candidates) {
    const topic = topicOf(req);
    const preferred = topic && config.prefer[topic];
    if (!preferred) return undefined;
    const first = candidates.filter((c) => c.model === preferred);
    if (first.length === 0) return undefined;
    metric(`routed_${topic}`, 1n);
    return [...first, ...candidates.filter((c) => c.model !== preferred)];
  },
};
