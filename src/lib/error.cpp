#include "mill/error.hpp"

#include "mill/text.hpp"

namespace mill {

Error::Error(const std::string& message, ExitCode code) : std::runtime_error(one_line(message)), code_(code) {}

}  // namespace mill
