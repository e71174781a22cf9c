#include "mill/remote/http_client.hpp"

#include <curl/curl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <strings.h>

#include <algorithm>
#include <cmath>
#include <ctime>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <thread>

#include "mill/base/error.hpp"
#include "mill/remote/openai_protocol.hpp"
#include "mill/base/text.hpp"

namespace mill {

namespace {

using Clock = std::chrono::steady_clock;

void init_curl_once() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

// The CA certificates https:// servers are verified against. A libcurl looks where its build was configured to
// (Debian's, which the release tarball bundles: /etc/ssl/certs/ca-certificates.crt), and RHEL-family or SUSE hosts
// keep theirs elsewhere. CURL_CA_BUNDLE or SSL_CERT_FILE names a file; else, when libcurl's own default is not
// there, the first system bundle that is. Empty: libcurl's default.
const std::string& ca_bundle() {
  static const std::string bundle = [] {
    for (const char* variable : {"CURL_CA_BUNDLE", "SSL_CERT_FILE"}) {
      if (const char* value = std::getenv(variable); value && *value) return std::string(value);
    }
    const char* built_in = nullptr;
#if LIBCURL_VERSION_NUM >= 0x074600  // 7.70: curl_version_info reports the default bundle
    const auto* info = curl_version_info(CURLVERSION_NOW);
    if (info->age >= CURLVERSION_NINTH) built_in = info->cainfo;
#endif
    std::error_code ec;
    if (built_in && std::filesystem::exists(built_in, ec)) return std::string();
    for (const char* system : {"/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/ca-bundle.pem", "/etc/ssl/cert.pem",
                               "/etc/ssl/certs/ca-certificates.crt"}) {
      if (std::filesystem::exists(system, ec)) return std::string(system);
    }
    return std::string();
  }();
  return bundle;
}

std::size_t append_body(char* data, std::size_t size, std::size_t count, void* target) {
  static_cast<std::string*>(target)->append(data, size * count);
  return size * count;
}

// A Retry-After header value: delta-seconds or an HTTP date.
std::optional<double> parse_retry_after(const std::string& value) {
  if (value.empty()) return std::nullopt;
  char* end = nullptr;
  const double seconds = std::strtod(value.c_str(), &end);
  if (end && *end == '\0' && seconds >= 0 && std::isfinite(seconds)) return seconds;
  std::tm when{};
  if (strptime(value.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &when)) {
    const auto at = timegm(&when);
    const auto now = std::time(nullptr);
    return at > now ? static_cast<double>(at - now) : 0.0;
  }
  return std::nullopt;
}

std::size_t read_retry_after(char* data, std::size_t size, std::size_t count, void* target) {
  const std::string_view line(data, size * count);
  constexpr std::string_view name = "retry-after:";
  if (line.size() > name.size() && ::strncasecmp(line.data(), name.data(), name.size()) == 0) {
    *static_cast<std::optional<double>*>(target) = parse_retry_after(trim(line.substr(name.size())));
  }
  return size * count;
}

bool retryable_transport_error(CURLcode code) {
  switch (code) {
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_SSL_CONNECT_ERROR:
      return true;
    default:
      return false;
  }
}

// A failure to reach the server at all, as opposed to one while talking to it.
bool connection_failure(CURLcode code) {
  return code == CURLE_COULDNT_CONNECT || code == CURLE_COULDNT_RESOLVE_HOST || code == CURLE_COULDNT_RESOLVE_PROXY;
}

// The host and port a URL points at ("127.0.0.1 port 8000"), the default port filled in; the URL itself when
// curl cannot parse it.
std::string host_and_port(const std::string& url) {
  std::unique_ptr<CURLU, decltype(&curl_url_cleanup)> parsed(curl_url(), curl_url_cleanup);
  if (!parsed || curl_url_set(parsed.get(), CURLUPART_URL, url.c_str(), 0) != CURLUE_OK) return redact_url(url);
  char* host = nullptr;
  char* port = nullptr;
  std::string out = redact_url(url);
  if (curl_url_get(parsed.get(), CURLUPART_HOST, &host, 0) == CURLUE_OK &&
      curl_url_get(parsed.get(), CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK) {
    out = fmt::format("{} port {}", host, port);
  }
  curl_free(host);
  curl_free(port);
  return out;
}

// What went wrong below HTTP, in curl's words (its code's name, then its detail); a connection failure names the
// host and port it could not reach.
std::string transport_failure(const std::string& url, CURLcode code, const char* detail) {
  const std::string what = curl_easy_strerror(code);
  const std::string more = detail && *detail && one_line(detail) != what ? " (" + one_line(detail) + ")" : "";
  if (connection_failure(code)) return fmt::format("cannot connect to {}: {}{}", host_and_port(url), what, more);
  return what + more;
}

bool retryable_status(long status) {
  return status == 408 || status == 409 || status == 425 || status == 429 || status >= 500;
}

struct Transfer {
  std::size_t index = 0;
  int attempt = 0;
  CURL* easy = nullptr;
  curl_slist* headers = nullptr;
  std::string body;
  std::optional<double> retry_after;
  char error[CURL_ERROR_SIZE] = {};
  ~Transfer() {
    if (easy) curl_easy_cleanup(easy);
    if (headers) curl_slist_free_all(headers);
  }
};

// The options every request sets: URL, whole-request timeout, where the body and curl's error text go, the CA
// bundle, and the headers (`headers` so far, then the bearer token).
void prepare(Transfer& transfer, const std::string& url, double timeout_s, const std::string& bearer_token) {
  CURL* easy = transfer.easy = curl_easy_init();
  if (!bearer_token.empty()) {
    transfer.headers = curl_slist_append(transfer.headers, ("Authorization: Bearer " + bearer_token).c_str());
  }
  curl_easy_setopt(easy, CURLOPT_URL, url.c_str());
  if (transfer.headers) curl_easy_setopt(easy, CURLOPT_HTTPHEADER, transfer.headers);
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout_s * 1000));
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, append_body);
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, &transfer.body);
  curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, transfer.error);
  if (!ca_bundle().empty()) curl_easy_setopt(easy, CURLOPT_CAINFO, ca_bundle().c_str());
}

struct Waiting {
  std::size_t index = 0;
  int attempt = 0;
  Clock::time_point ready;
};

}  // namespace

double retry_delay_s(const RetryPolicy& policy, int attempt, std::optional<double> retry_after_s) {
  thread_local std::mt19937 random{std::random_device{}()};
  const double backoff = std::min(policy.max_delay_s, policy.base_delay_s * std::pow(2.0, std::max(0, attempt - 1)));
  const double jittered = backoff * std::uniform_real_distribution<double>(0.8, 1.2)(random);
  if (retry_after_s) return std::max(jittered, std::min(*retry_after_s, policy.max_retry_after_s));
  return jittered;
}

HttpClient::HttpClient(RetryPolicy policy, int concurrency, std::string bearer_token)
    : policy_(policy), concurrency_(std::max(1, concurrency)), bearer_token_(std::move(bearer_token)) {
  init_curl_once();
}

std::pair<long, std::string> HttpClient::get_once(const std::string& url, double timeout_s) const {
  Transfer transfer;
  prepare(transfer, url, timeout_s, bearer_token_);
  const auto code = curl_easy_perform(transfer.easy);
  long status = 0;
  if (code == CURLE_OK) curl_easy_getinfo(transfer.easy, CURLINFO_RESPONSE_CODE, &status);
  return {status,
          code == CURLE_OK ? transfer.body : redact_secret(transport_failure(url, code, transfer.error), bearer_token_)};
}

void HttpClient::run(const std::vector<HttpRequest>& requests, const Accept& accept) {
  if (requests.empty()) return;
  std::unique_ptr<CURLM, decltype(&curl_multi_cleanup)> multi(curl_multi_init(), curl_multi_cleanup);
  std::deque<Waiting> queue;
  for (std::size_t i = 0; i < requests.size(); ++i) queue.push_back({i, 0, Clock::now()});
  std::map<CURL*, std::unique_ptr<Transfer>> active;
  std::optional<std::string> fatal;
  bool connection_failure_said = false;

  auto describe = [&](std::size_t index) {
    return fmt::format("{} {}", requests[index].method, redact_url(requests[index].url));
  };

  auto start = [&](const Waiting& waiting) {
    const auto& request = requests[waiting.index];
    auto transfer = std::make_unique<Transfer>();
    transfer->index = waiting.index;
    transfer->attempt = waiting.attempt;
    transfer->headers = curl_slist_append(transfer->headers, "Content-Type: application/json");
    transfer->headers = curl_slist_append(transfer->headers, "Expect:");  // no 100-continue round trip
    prepare(*transfer, request.url, policy_.timeout_s, bearer_token_);
    CURL* easy = transfer->easy;
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(policy_.connect_timeout_s * 1000));
    curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, read_retry_after);
    curl_easy_setopt(easy, CURLOPT_HEADERDATA, &transfer->retry_after);
    if (request.method == "POST") {
      curl_easy_setopt(easy, CURLOPT_POST, 1L);
      curl_easy_setopt(easy, CURLOPT_POSTFIELDS, request.body.c_str());
      curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(request.body.size()));
    }
    curl_multi_add_handle(multi.get(), easy);
    ++stats_.attempts;
    if (waiting.attempt > 0) ++stats_.retries;
    active.emplace(easy, std::move(transfer));
  };

  auto finish = [&](Transfer& transfer, CURLcode code) {
    long status = 0;
    curl_easy_getinfo(transfer.easy, CURLINFO_RESPONSE_CODE, &status);
    std::string reason;
    bool retryable = false;
    if (code != CURLE_OK) {
      reason = code == CURLE_OPERATION_TIMEDOUT
                   ? fmt::format("no complete answer within the timeout of {} s", policy_.timeout_s)
                   : transport_failure(requests[transfer.index].url, code, transfer.error);
      retryable = retryable_transport_error(code);
    } else if (status >= 200 && status < 300) {
      std::optional<std::string> unusable;
      try {
        unusable = accept(transfer.index, transfer.body);
      } catch (const std::exception& e) {
        unusable = one_line(e.what());
      }
      if (!unusable) return;
      reason = "unusable answer: " + *unusable;
      retryable = true;
    } else {
      reason = fmt::format("HTTP {}: {}", status, error_message_of(transfer.body));
      retryable = retryable_status(status);
    }
    reason = redact_secret(reason, bearer_token_);
    const int next_attempt = transfer.attempt + 1;
    if (retryable && next_attempt <= policy_.max_retries) {
      const double delay =
          retry_delay_s(policy_, next_attempt, status == 429 || status == 503 ? transfer.retry_after : std::nullopt);
      // The first failure to reach the server is said at the default log level: the retries that follow can
      // take minutes, and a server that is not running should not look like a slow one.
      const bool say = connection_failure(code) && !connection_failure_said;
      connection_failure_said = connection_failure_said || say;
      spdlog::log(say ? spdlog::level::warn : spdlog::level::info, "{}: {}; retry {}/{} in {:.2f} s",
                  describe(transfer.index), reason, next_attempt, policy_.max_retries, delay);
      queue.push_back({transfer.index, next_attempt,
                       Clock::now() + std::chrono::microseconds(static_cast<long long>(delay * 1e6))});
      return;
    }
    if (!fatal) {
      fatal = fmt::format("{} failed{}: {}", describe(transfer.index),
                          transfer.attempt > 0 ? fmt::format(" after {} attempts", transfer.attempt + 1) : "", reason);
      if (retryable) *fatal += " (raise max_retries or timeout in the model spec if the server is just slow)";
    }
  };

  while (true) {
    const auto now = Clock::now();
    std::optional<Clock::time_point> next_ready;
    if (!fatal) {
      for (auto it = queue.begin(); it != queue.end() && static_cast<int>(active.size()) < concurrency_;) {
        if (it->ready <= now) {
          start(*it);
          it = queue.erase(it);
        } else {
          ++it;
        }
      }
      for (const auto& waiting : queue) {
        if (!next_ready || waiting.ready < *next_ready) next_ready = waiting.ready;
      }
    }
    if (active.empty()) {
      if (fatal || queue.empty()) break;
      std::this_thread::sleep_until(*next_ready);
      continue;
    }
    int running = 0;
    curl_multi_perform(multi.get(), &running);
    int left = 0;
    while (CURLMsg* message = curl_multi_info_read(multi.get(), &left)) {
      if (message->msg != CURLMSG_DONE) continue;
      CURL* easy = message->easy_handle;
      const CURLcode code = message->data.result;
      curl_multi_remove_handle(multi.get(), easy);
      auto node = active.extract(easy);
      finish(*node.mapped(), code);
    }
    int wait_ms = 1000;
    if (next_ready && static_cast<int>(active.size()) < concurrency_) {
      const auto until = std::chrono::duration_cast<std::chrono::milliseconds>(*next_ready - Clock::now()).count();
      wait_ms = static_cast<int>(std::clamp<long long>(until, 0, 1000));
    }
    if (!active.empty()) curl_multi_poll(multi.get(), nullptr, 0, wait_ms, nullptr);
  }
  if (fatal) throw Error(*fatal, ExitCode::eval_failed);
}

}  // namespace mill
