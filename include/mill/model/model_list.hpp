#pragma once
// Lists of model specs as users type them on a command line: "a[x=1,y=2],b". Commas inside [...] and "..." stay
// with their spec; outside them a backslash makes the next ',', '"' or '\' part of the name, so that a local
// checkpoint whose path has a comma ("/ckpt/a,b") can be listed as "/ckpt/a\,b". `model_list_item` writes a
// spec so that `split_model_list` reads it back unchanged; collect's resubmit lines rely on that round trip.
#include <string>
#include <string_view>
#include <vector>

namespace mill {

// Splits a comma-separated list into specs (surrounding spaces and empty items dropped).
std::vector<std::string> split_model_list(std::string_view text);

// `spec` as one list item: ',', '"' and '\' in its name (before '[') are backslash-escaped; the argument part,
// which ModelSpec::to_string already quotes, is left as it is.
std::string model_list_item(std::string_view spec);

}  // namespace mill
