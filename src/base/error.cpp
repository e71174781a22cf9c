#include "mill/base/error.hpp"

#include "mill/base/text.hpp"

namespace mill {

Error::Error(const std::string& message, ExitCode code) : std::runtime_error(one_line(message)), code_(code) {}

}  // namespace mill
