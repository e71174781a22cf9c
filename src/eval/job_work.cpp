#include "mill/eval/job_work.hpp"

#include "mill/eval/engine.hpp"

namespace mill {

JobWork operator+(const JobWork& a, const JobWork& b) {
  return {a.documents + b.documents, a.input_bytes + b.input_bytes, a.output_tokens + b.output_tokens};
}

JobWork work_of_samples(const std::vector<const Sample*>& samples) {
  JobWork work;
  for (const auto* sample : samples) {
    work.documents += 1;
    work.input_bytes += static_cast<double>(sample->context.size() + sample->text.size());
    for (const auto& continuation : sample->continuations) work.input_bytes += static_cast<double>(continuation.size());
  }
  return work;
}

}  // namespace mill
