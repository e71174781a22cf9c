#include "mill/base/plugin.hpp"

#include <dlfcn.h>
#include <fmt/format.h>

#include <cstdlib>

#include "mill/base/error.hpp"

namespace mill {

std::filesystem::path plugin_path(const PluginInfo& plugin) {
  if (const char* path = std::getenv(plugin.environment_variable); path && *path) return path;
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  const auto bin_dir = ec ? std::filesystem::path(".") : exe.parent_path();
  // A build tree has the plugins beside mill; an installed prefix (bin/mill) has them in lib/mill, found relative to
  // the binary so that the prefix can be moved.
  const auto beside = bin_dir / plugin.file_name;
  const auto installed = bin_dir.parent_path() / "lib" / "mill" / plugin.file_name;
  if (std::filesystem::exists(beside, ec)) return beside;
  if (std::filesystem::exists(installed, ec) || bin_dir.filename() == "bin") return installed;
  return beside;
}

void* open_plugin(const PluginInfo& plugin) {
  const auto path = plugin_path(plugin);
  void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    const char* reason = ::dlerror();
    throw Error(fmt::format("{}: cannot load {} ({}); build the {} target or set {}", plugin.unavailable,
                            path.string(), reason ? reason : "unknown reason", plugin.target,
                            plugin.environment_variable),
                ExitCode::eval_failed);
  }
  return handle;
}

void* plugin_symbol(void* handle, const PluginInfo& plugin, const char* name) {
  void* symbol = ::dlsym(handle, name);
  if (!symbol) {
    throw Error(fmt::format("{} is not mill's {} plugin (no {} symbol)", plugin_path(plugin).string(), plugin.kind,
                            name),
                ExitCode::eval_failed);
  }
  return symbol;
}

}  // namespace mill
