// Result files are read back from a shared filesystem where anything can happen to them.
#include <cstdint>
#include <nlohmann/json.hpp>

#include "mill/eval/results.hpp"
#include "mill/sweep/walltime.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto document = nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (!document.is_discarded()) (void)mill::result_document_problem(document);
  (void)mill::parse_slurm_time(std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
