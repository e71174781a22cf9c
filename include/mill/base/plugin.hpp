#pragma once
// Loading mill's plugins (libmill_runtime.so, libmill_remote.so): shared libraries beside the mill binary that
// carry the heavy dependencies (libtorch; libcurl and cpp-httplib), loaded only by the commands that need them.
#include <filesystem>

namespace mill {

struct PluginInfo {
  const char* unavailable;           // for messages: "the in-process model runtime is not available"
  const char* kind;                  // for messages: "runtime" in "not mill's runtime plugin"
  const char* target;                // the CMake target that builds it
  const char* environment_variable;  // overrides the path
  const char* file_name;             // beside the binary
};

// $<environment_variable> when set, else <file_name> beside the running mill binary.
std::filesystem::path plugin_path(const PluginInfo& plugin);

// Opens the plugin (RTLD_NOW | RTLD_LOCAL); throws mill::Error (eval_failed) naming the file, the loader's reason
// and how to get the plugin.
void* open_plugin(const PluginInfo& plugin);

// The named entry point of an opened plugin; throws mill::Error (eval_failed) when the file lacks it.
void* plugin_symbol(void* handle, const PluginInfo& plugin, const char* name);

}  // namespace mill
