#pragma once
// Loading mill's plugins (libmill_runtime.so, libmill_remote.so): shared libraries beside the mill binary (or in
// lib/mill of an installed prefix) that carry the heavy dependencies (libtorch; libcurl and cpp-httplib), loaded
// only by the commands that need them.
#include <filesystem>

namespace mill {

struct PluginInfo {
  const char* unavailable;           // for messages: "the in-process model runtime is not available"
  const char* kind;                  // for messages: "runtime" in "not mill's runtime plugin"
  const char* target;                // the CMake target that builds it
  const char* environment_variable;  // overrides the path
  const char* file_name;             // beside the binary, or in <prefix>/lib/mill
};

// $<environment_variable> when set; else <file_name> beside the running mill binary (a build tree) when there, else
// in ../lib/mill from it (an installed prefix: bin/mill, lib/mill/). When neither exists: the installed location
// if the binary is in a bin/ directory, else beside it (the path that error messages name).
std::filesystem::path plugin_path(const PluginInfo& plugin);

// Opens the plugin (RTLD_NOW | RTLD_LOCAL); throws mill::Error (eval_failed) naming the file, the loader's reason
// and how to get the plugin.
void* open_plugin(const PluginInfo& plugin);

// The named entry point of an opened plugin; throws mill::Error (eval_failed) when the file lacks it.
void* plugin_symbol(void* handle, const PluginInfo& plugin, const char* name);

}  // namespace mill
