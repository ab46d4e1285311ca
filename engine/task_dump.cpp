#include "engine/task_dump.hpp"

namespace specontext {

nlohmann::json instance_json(const TaskInstance& inst, TaskKind kind, bool with_ids) {
  nlohmann::json j = {{"trial", inst.trial}, {"prompt_tokens", inst.prompt.size()}, {"documents", inst.documents}};
  if (with_ids) j["prompt_ids"] = inst.prompt;
  if (is_answer_task(kind)) {
    j["question"] = inst.question;
    j["answer"] = inst.answer;
    j["haystack"] = {inst.haystack_begin, inst.haystack_end};
    nlohmann::json needles = nlohmann::json::array();
    for (const Needle& n : inst.needles)
      needles.push_back({{"text", n.text}, {"depth", n.depth}, {"actual_depth", n.actual_depth}, {"position", n.position}, {"tokens", n.tokens}});
    j["needles"] = needles;
    if (kind == TaskKind::MultiKey) j["asked"] = inst.asked;
  }
  if (kind == TaskKind::Fidelity) j["generate"] = inst.generate;
  if (with_ids && !is_answer_task(kind)) j["forced_ids"] = inst.forced;
  return j;
}

nlohmann::json tasks_json(const TaskOptions& o, const std::vector<TaskInstance>& instances, const std::string& model, const std::string& heldout,
                          const std::vector<int>& eos_ids) {
  nlohmann::json j = {{"format", "specontext-eval-tasks"}, {"version", 1}, {"task", to_string(o.kind)}, {"model", model}, {"heldout", heldout},
                      {"context", o.context}, {"max_new", o.max_new}, {"seed", o.seed}, {"trials", o.trials}, {"eos_ids", eos_ids}};
  switch (o.kind) {
    case TaskKind::MultiKey: j["keys"] = o.keys; break;
    case TaskKind::VarTrack: j["hops"] = o.hops; break;
    case TaskKind::Perplexity: j["prefix"] = o.prefix_tokens(); break;
    case TaskKind::Fidelity: j["generate"] = o.generate; break;
    case TaskKind::Passkey: break;
  }
  if (is_answer_task(o.kind)) j["scoring"] = answer_rule();
  nlohmann::json list = nlohmann::json::array();
  for (const TaskInstance& inst : instances) list.push_back(instance_json(inst, o.kind, true));
  j["instances"] = list;
  return j;
}

}  // namespace specontext
