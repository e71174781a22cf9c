#pragma once
// What one job asks of the model. The same definition is used in a result's provenance.work (what the run sent)
// and at plan time (work_estimate.hpp estimates it from the data), so the throughput learned from one applies to
// the other (cost_model.hpp).
#include <vector>

namespace mill {

struct Sample;

struct JobWork {
  double documents = 0;
  double input_bytes = 0;    // prompt bytes through the model: each context once, plus every continuation
  double output_tokens = 0;  // generated tokens (generative tasks; at plan time the expectation)
};
JobWork operator+(const JobWork& a, const JobWork& b);

// What these samples send through the model: each context once plus every continuation (log-likelihood), each
// context (generation; the generated tokens are counted by the caller), each text (perplexity).
JobWork work_of_samples(const std::vector<const Sample*>& samples);

}  // namespace mill
