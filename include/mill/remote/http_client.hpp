#pragma once
// HTTP for the remote backends: many requests in flight over libcurl's multi interface, each retried with
// exponential backoff on 429, 5xx, timeouts, dropped connections and unusable bodies, honouring Retry-After.
#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace mill {

struct RetryPolicy {
  int max_retries = 5;             // attempts after the first
  double base_delay_s = 1.0;       // the first backoff; doubled per attempt (with ±20% jitter)
  double max_delay_s = 60.0;       // backoff cap
  double max_retry_after_s = 600;  // a server's Retry-After is honoured up to this
  double timeout_s = 300;          // whole request, connection to last byte
  double connect_timeout_s = 30;
};

struct HttpRequest {
  std::string method = "POST";  // POST (JSON body) or GET
  std::string url;
  std::string body;
};

struct HttpStats {
  std::size_t attempts = 0;  // HTTP exchanges started
  std::size_t retries = 0;   // of those, repeats after a failure
};

class HttpClient {
 public:
  // `bearer_token` goes into the Authorization header only; it is redacted from every message this class makes.
  HttpClient(RetryPolicy policy, int concurrency, std::string bearer_token = {});

  // Called on the calling thread for each 2xx answer: returns nothing when the body was used, or a reason why it
  // is unusable (malformed JSON, missing fields), which makes the request retryable.
  using Accept = std::function<std::optional<std::string>(std::size_t index, const std::string& body)>;

  // Runs the requests with at most `concurrency` in flight. When one fails for good (a 4xx other than 408/429,
  // or retries exhausted) no new request starts, those in flight finish (and are accepted), then mill::Error
  // (eval_failed) is thrown naming the URL, the status and the server's message.
  void run(const std::vector<HttpRequest>& requests, const Accept& accept);

  // One GET with a short timeout and no retries: the status (0 when there was no HTTP answer) and the body.
  std::pair<long, std::string> get_once(const std::string& url, double timeout_s) const;

  const HttpStats& stats() const { return stats_; }

 private:
  RetryPolicy policy_;
  int concurrency_;
  std::string bearer_token_;
  HttpStats stats_;
};

// The delay before retry number `attempt` (1-based) given a server's Retry-After in seconds (if any).
double retry_delay_s(const RetryPolicy& policy, int attempt, std::optional<double> retry_after_s);

}  // namespace mill
