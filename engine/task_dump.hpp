#pragma once
// Task instances as JSON (`specontext eval --dump-tasks FILE`), so that another engine (Hugging
// Face transformers, through a Python script) can run the identical token ids:
//
// {
//   "format": "specontext-eval-tasks", "version": 1,
//   "task": "passkey" | "multikey" | "vartrack" | "perplexity" | "fidelity",
//   "model": "<--model>", "heldout": "<--heldout folder>",
//   "context": N, "max_new": M, "seed": S, "trials": K, "eos_ids": [int],
//   "keys": k (multikey), "hops": h (vartrack), "prefix": P (perplexity), "generate": G (fidelity),
//   "scoring": "<the answer rule, in words>"                      (answer tasks),
//   "instances": [ {
//     "trial": t,
//     "prompt_ids": [int],          the ids to prefill, BOS included where the tokenizer adds one
//     "prompt_tokens": int,
//     "documents": ["<source>--<slug>.txt"],  the held-out files the text came from, in order
//     answer tasks (greedy-decode up to max_new tokens after the prompt, stopping after the first
//     of eos_ids; decode to text without special tokens; score by "scoring"):
//     "question": str, "answer": "<digits>",
//     "haystack": [begin, end],     token span of the haystack (needles included) in prompt_ids
//     "needles": [ {"text": str (with its leading whitespace), "depth": asked (0..1 of the haystack),
//                   "actual_depth": where it went, "position": index of its first token in prompt_ids,
//                   "tokens": int} ],
//     "asked": i                    (multikey) the needle the question asks about,
//     perplexity: "forced_ids": [int]   the rest of the window: position j is scored by the logits
//                 after prompt_ids + forced_ids[:j]; perplexity = exp(mean NLL over forced_ids)
//     fidelity:   "generate": G, "forced_ids": [int]   the dense model's greedy continuation (ours);
//                 agreement = fraction of j where argmax after prompt_ids + forced_ids[:j] is forced_ids[j]
//   } ]
// }
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/long_context_tasks.hpp"

namespace specontext {

// One instance; with_ids false leaves out prompt_ids and forced_ids (for result tables).
nlohmann::json instance_json(const TaskInstance& instance, TaskKind kind, bool with_ids);

nlohmann::json tasks_json(const TaskOptions& options, const std::vector<TaskInstance>& instances, const std::string& model,
                          const std::string& heldout, const std::vector<int>& eos_ids);

}  // namespace specontext
