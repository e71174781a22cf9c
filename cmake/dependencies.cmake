# The libraries mill builds against (docs/install.md, "Source build"). Each is looked for first (find_package, or
# pkg-config for those without a CMake package); one that is not installed is built from a pinned source release,
# checked against its SHA-256, with FetchContent. Offline: -DFETCHCONTENT_SOURCE_DIR_<NAME>=DIR uses an unpacked copy
# (NAME as in the FetchContent_Declare calls below, upper case: FMT, SPDLOG, YAML-CPP, CLI11, NLOHMANN_JSON, XXHASH,
# PCRE2, UTF8PROC, SENTENCEPIECE, CURL, HTTPLIB), and FETCHCONTENT_FULLY_DISCONNECTED=ON forbids any download.
# -DMILL_FETCH_DEPENDENCIES=OFF turns the fallback off (a missing library is then an error).
#
# The pins are the versions Debian 12 ships, as the source tarballs in Debian's archive (the first URL, with a
# permanent copy on snapshot.debian.org). Where that tarball is byte-identical to the upstream release (checked by
# hash: nlohmann_json, xxHash, utf8proc, PCRE2, curl) the upstream URL is listed too; the others are Debian's
# repacks of the upstream tag (+ds/+dfsg: documentation or bundled copies removed), which build the same library.
#
# Optional parts switch off, each with one line saying why: the remote backends and `mill serve` with
# -DMILL_BUILD_REMOTE=OFF, or when libcurl or cpp-httplib is missing and fetching is off; the tests without Catch2
# (or without the remote backends, which they exercise). The model runtime is decided in
# the top CMakeLists.txt (Torch found or not).
include(FetchContent)
option(MILL_FETCH_DEPENDENCIES "Build libraries that are not installed from pinned source releases (FetchContent)" ON)

set(mill_debian_pool "https://deb.debian.org/debian/pool/main")
set(mill_debian_snapshot "https://snapshot.debian.org/archive/debian/20250520T000000Z/pool/main")

# Library builds inside mill's: static, position-independent (the plugins link them), no tests, tools or install
# rules of their own. Set in a function so that none of these settings reaches mill's own targets.
function(mill_make_available)
  set(BUILD_SHARED_LIBS OFF)
  set(BUILD_TESTING OFF)
  set(CMAKE_POSITION_INDEPENDENT_CODE ON)
  set(CMAKE_POLICY_DEFAULT_CMP0077 NEW)  # their option() and set(CACHE) calls keep the values set here
  set(CMAKE_POLICY_DEFAULT_CMP0126 NEW)
  # Their cmake_minimum_required() predates 3.5, which CMake 4 refuses (pip's cmake is 4.x); 3.27+ only warns.
  set(CMAKE_POLICY_VERSION_MINIMUM 3.5)
  set(CMAKE_COMPILE_WARNING_AS_ERROR OFF)
  set(FMT_INSTALL OFF)
  set(FMT_TEST OFF)
  set(FMT_DOC OFF)
  set(SPDLOG_FMT_EXTERNAL ON)
  set(SPDLOG_INSTALL OFF)
  set(SPDLOG_BUILD_EXAMPLE OFF)
  set(YAML_CPP_BUILD_TESTS OFF)
  set(YAML_CPP_BUILD_TOOLS OFF)
  set(YAML_CPP_BUILD_CONTRIB OFF)
  set(YAML_CPP_INSTALL OFF)
  set(CLI11_INSTALL OFF)
  set(CLI11_BUILD_TESTS OFF)
  set(CLI11_BUILD_EXAMPLES OFF)
  set(CLI11_BUILD_DOCS OFF)
  set(JSON_Install OFF)
  set(JSON_BuildTests OFF)
  set(XXHASH_BUNDLED_MODE ON)
  set(XXHASH_BUILD_XXHSUM OFF)
  set(PCRE2_BUILD_PCRE2GREP OFF)
  set(PCRE2_BUILD_TESTS OFF)
  set(PCRE2_STATIC_PIC ON)
  set(PCRE2_SUPPORT_JIT ON)
  set(UTF8PROC_INSTALL OFF)
  set(SPM_ENABLE_SHARED OFF)
  set(SPM_ENABLE_TCMALLOC OFF)
  # curl: the HTTP(S) client only, with OpenSSL when it is installed; none of the optional protocol libraries.
  set(BUILD_CURL_EXE OFF)
  set(HTTP_ONLY ON)
  set(CURL_DISABLE_LDAP ON)
  set(CURL_USE_LIBSSH2 OFF)
  set(CURL_USE_LIBPSL OFF)
  set(USE_NGHTTP2 OFF)
  set(USE_LIBIDN2 OFF)
  set(CURL_ZLIB OFF)
  set(CURL_BROTLI OFF)
  set(CURL_ZSTD OFF)
  set(ENABLE_MANUAL OFF)
  set(CURL_ENABLE_SSL ${mill_openssl_found})
  set(CURL_USE_OPENSSL ${mill_openssl_found})
  # mill's warning flags (-Wall -Wextra, set before this file) are for mill's code; theirs compiles quietly.
  get_directory_property(mill_options COMPILE_OPTIONS)
  set(quiet_options ${mill_options})
  list(FILTER quiet_options EXCLUDE REGEX "^-W")
  set_directory_properties(PROPERTIES COMPILE_OPTIONS "${quiet_options};-w")
  FetchContent_MakeAvailable(${ARGN})
  set_directory_properties(PROPERTIES COMPILE_OPTIONS "${mill_options}")
  foreach(name IN LISTS ARGN)
    string(TOLOWER ${name} lower)
    set(${lower}_SOURCE_DIR ${${lower}_SOURCE_DIR} PARENT_SCOPE)
    # Only what mill links gets built, and nothing of theirs is installed with mill. (Unset: found installed.)
    set(added ${${lower}_SOURCE_DIR})
    if(lower STREQUAL "xxhash")
      set(added ${added}/cmake_unofficial)
    elseif(lower STREQUAL "httplib")
      set(added "")  # header only: no CMake project added
    endif()
    if(added AND ${lower}_SOURCE_DIR)
      set_property(DIRECTORY ${added} PROPERTY EXCLUDE_FROM_ALL ON)
    endif()
  endforeach()
endfunction()

# Libraries with a CMake package: FIND_PACKAGE_ARGS makes FetchContent try find_package first.
FetchContent_Declare(fmt
  URL ${mill_debian_pool}/f/fmtlib/fmtlib_9.1.0+ds1.orig.tar.gz
      ${mill_debian_snapshot}/f/fmtlib/fmtlib_9.1.0+ds1.orig.tar.gz
  URL_HASH SHA256=84ce1c2d0be3a9863935137969dcec6970125caac032f82474640bfc81463583
  FIND_PACKAGE_ARGS CONFIG)
FetchContent_Declare(spdlog
  URL ${mill_debian_pool}/s/spdlog/spdlog_1.10.0+ds.orig.tar.xz
      ${mill_debian_snapshot}/s/spdlog/spdlog_1.10.0+ds.orig.tar.xz
  URL_HASH SHA256=620ca6842b5c21014470bd42eb4716024674214fb973b5ffa3aaea33310ad327
  FIND_PACKAGE_ARGS CONFIG)
FetchContent_Declare(yaml-cpp
  URL ${mill_debian_pool}/y/yaml-cpp/yaml-cpp_0.7.0+dfsg.orig.tar.xz
      ${mill_debian_snapshot}/y/yaml-cpp/yaml-cpp_0.7.0+dfsg.orig.tar.xz
  URL_HASH SHA256=dc63708605404e0b963e0ca3a9619d1c8270eda2839603e6fa0384e5e51e5312
  FIND_PACKAGE_ARGS CONFIG)
FetchContent_Declare(CLI11
  URL ${mill_debian_pool}/c/cli11/cli11_2.1.2+ds.orig.tar.xz
      ${mill_debian_snapshot}/c/cli11/cli11_2.1.2+ds.orig.tar.xz
  URL_HASH SHA256=8143d20b688e98ccce8e24562d3b68e5f47c12e896c42c7ca8553dbde5bed55d
  FIND_PACKAGE_ARGS CONFIG)
FetchContent_Declare(nlohmann_json
  URL ${mill_debian_pool}/n/nlohmann-json3/nlohmann-json3_3.11.2.orig.tar.gz
      ${mill_debian_snapshot}/n/nlohmann-json3/nlohmann-json3_3.11.2.orig.tar.gz
      https://github.com/nlohmann/json/archive/refs/tags/v3.11.2.tar.gz
  URL_HASH SHA256=d69f9deb6a75e2580465c6c4c5111b89c4dc2fa94e3a85fcd2ffcd9a143d9273
  FIND_PACKAGE_ARGS 3 CONFIG)

# Libraries found through pkg-config (Debian installs no CMake package for them).
FetchContent_Declare(xxhash
  URL ${mill_debian_pool}/x/xxhash/xxhash_0.8.1.orig.tar.gz
      ${mill_debian_snapshot}/x/xxhash/xxhash_0.8.1.orig.tar.gz
      https://github.com/Cyan4973/xxHash/archive/refs/tags/v0.8.1.tar.gz
  URL_HASH SHA256=3bb6b7d6f30c591dd65aaaff1c8b7a5b94d81687998ca9400082c739a690436c
  SOURCE_SUBDIR cmake_unofficial)
FetchContent_Declare(pcre2
  URL ${mill_debian_pool}/p/pcre2/pcre2_10.42.orig.tar.gz
      ${mill_debian_snapshot}/p/pcre2/pcre2_10.42.orig.tar.gz
      https://github.com/PCRE2Project/pcre2/releases/download/pcre2-10.42/pcre2-10.42.tar.gz
  URL_HASH SHA256=c33b418e3b936ee3153de2c61cc638e7e4fe3156022a5c77d0711bcbb9d64f1f)
FetchContent_Declare(utf8proc
  URL ${mill_debian_pool}/u/utf8proc/utf8proc_2.8.0.orig.tar.gz
      ${mill_debian_snapshot}/u/utf8proc/utf8proc_2.8.0.orig.tar.gz
      https://github.com/JuliaStrings/utf8proc/archive/refs/tags/v2.8.0.tar.gz
  URL_HASH SHA256=a0a60a79fe6f6d54e7d411facbfcc867a6e198608f2cd992490e46f04b1bcecc)
FetchContent_Declare(sentencepiece
  URL ${mill_debian_pool}/s/sentencepiece/sentencepiece_0.1.97.orig.tar.gz
      ${mill_debian_snapshot}/s/sentencepiece/sentencepiece_0.1.97.orig.tar.gz
  URL_HASH SHA256=56430381f45dc6debfd2e0cbde4f039f9499c49ca825af184b0cbf318c17a18f)
# The remote plugin's: libcurl (a CMake find module) and cpp-httplib (header-only upstream; Debian builds a library).
FetchContent_Declare(curl
  URL ${mill_debian_pool}/c/curl/curl_7.88.1.orig.tar.gz
      ${mill_debian_snapshot}/c/curl/curl_7.88.1.orig.tar.gz
      https://curl.se/download/curl-7.88.1.tar.gz
  URL_HASH SHA256=cdb38b72e36bc5d33d5b8810f8018ece1baa29a8f215b4495e495ded82bbf3c7)
FetchContent_Declare(httplib
  URL ${mill_debian_pool}/c/cpp-httplib/cpp-httplib_0.11.4+ds.orig.tar.xz
      ${mill_debian_snapshot}/c/cpp-httplib/cpp-httplib_0.11.4+ds.orig.tar.xz
  URL_HASH SHA256=8b1a5df569003b6a4f24c68489bbda5c64aec94697bdc9ebba5d79408b2ae7eb
  SOURCE_SUBDIR no-cmake-project)  # only its header is used

find_package(Threads REQUIRED)
find_package(PkgConfig QUIET)
find_package(OpenSSL QUIET)
set(mill_openssl_found ${OpenSSL_FOUND})

# The pkg-config libraries: the targets mill links keep their pkg-config names (PkgConfig::XXHASH, ...) whichever
# way they came.
set(mill_fetched "")
foreach(spec "XXHASH;libxxhash;xxhash" "PCRE2;libpcre2-8;pcre2" "UTF8PROC;libutf8proc;utf8proc"
             "SENTENCEPIECE;sentencepiece;sentencepiece")
  list(GET spec 0 prefix)
  list(GET spec 1 module)
  list(GET spec 2 content)
  if(PkgConfig_FOUND)
    pkg_check_modules(${prefix} QUIET IMPORTED_TARGET ${module})
  endif()
  if(NOT ${prefix}_FOUND)
    list(APPEND mill_fetched ${content})
  endif()
endforeach()

if(mill_fetched AND NOT MILL_FETCH_DEPENDENCIES)
  message(FATAL_ERROR "mill: not installed: ${mill_fetched}. Install them (scripts/setup.sh lists Debian's packages), "
                      "point CMAKE_PREFIX_PATH at them, or configure with -DMILL_FETCH_DEPENDENCIES=ON")
endif()

# MILL_REMOTE (read by src/remote/CMakeLists.txt and cmake/install.cmake): whether libmill_remote.so is built.
option(MILL_BUILD_REMOTE "Build the remote backends and `mill serve` (libmill_remote.so: libcurl, cpp-httplib)" ON)
set(MILL_REMOTE ${MILL_BUILD_REMOTE})
if(MILL_REMOTE)
  find_package(CURL QUIET)
  if(PkgConfig_FOUND)
    pkg_check_modules(HTTPLIB QUIET IMPORTED_TARGET cpp-httplib)
  endif()
  set(mill_remote_missing "")
  if(NOT CURL_FOUND)
    list(APPEND mill_remote_missing curl)
  endif()
  if(NOT HTTPLIB_FOUND)
    list(APPEND mill_remote_missing httplib)
  endif()
  if(mill_remote_missing AND NOT MILL_FETCH_DEPENDENCIES)
    message(STATUS "mill: not installed: ${mill_remote_missing}: the remote backends and `mill serve` "
                   "(libmill_remote.so) are not built")
    set(MILL_REMOTE OFF)
  else()
    list(APPEND mill_fetched ${mill_remote_missing})
  endif()
else()
  message(STATUS "mill: MILL_BUILD_REMOTE=OFF: the remote backends and `mill serve` (libmill_remote.so) are not built")
endif()
mill_make_available(fmt spdlog yaml-cpp CLI11 nlohmann_json ${mill_fetched})
set(mill_built_here "")
foreach(name fmt spdlog yaml-cpp CLI11 nlohmann_json ${mill_fetched})
  string(TOLOWER ${name} lower)
  if(${lower}_SOURCE_DIR)
    list(APPEND mill_built_here ${name})
  endif()
endforeach()
if(mill_built_here)
  list(JOIN mill_built_here ", " mill_built_here)
  message(STATUS "mill: built from pinned sources (not installed, or FETCHCONTENT_SOURCE_DIR_* given): "
                 "${mill_built_here}")
endif()

if(NOT XXHASH_FOUND)
  add_library(PkgConfig::XXHASH INTERFACE IMPORTED)
  target_link_libraries(PkgConfig::XXHASH INTERFACE xxhash)
endif()
if(NOT PCRE2_FOUND)
  add_library(PkgConfig::PCRE2 INTERFACE IMPORTED)
  target_link_libraries(PkgConfig::PCRE2 INTERFACE pcre2-8-static)
endif()
if(NOT UTF8PROC_FOUND)
  add_library(PkgConfig::UTF8PROC INTERFACE IMPORTED)
  target_link_libraries(PkgConfig::UTF8PROC INTERFACE utf8proc)
endif()
if(NOT SENTENCEPIECE_FOUND)
  add_library(PkgConfig::SENTENCEPIECE INTERFACE IMPORTED)
  target_link_libraries(PkgConfig::SENTENCEPIECE INTERFACE sentencepiece-static)
  target_include_directories(PkgConfig::SENTENCEPIECE INTERFACE ${sentencepiece_SOURCE_DIR}/src)
endif()
if(MILL_REMOTE AND NOT HTTPLIB_FOUND)
  add_library(PkgConfig::HTTPLIB INTERFACE IMPORTED)
  target_include_directories(PkgConfig::HTTPLIB INTERFACE ${httplib_SOURCE_DIR})
  target_link_libraries(PkgConfig::HTTPLIB INTERFACE Threads::Threads)
endif()
if(MILL_REMOTE AND NOT CURL_FOUND AND NOT mill_openssl_found)
  message(STATUS "mill: OpenSSL not found: the libcurl built here speaks plain HTTP only, so api[...] cannot reach "
                 "https:// servers (install OpenSSL's headers, e.g. openssl-devel, and configure again)")
endif()

# The tests need Catch2 2.x and the remote backends (they drive them in-process).
if(MILL_BUILD_TESTS AND NOT MILL_REMOTE)
  message(STATUS "mill: the tests need the remote backends: they are not built")
  set(MILL_BUILD_TESTS OFF)
endif()
if(MILL_BUILD_TESTS)
  find_package(Catch2 2 QUIET)
  if(NOT Catch2_FOUND)
    message(STATUS "mill: Catch2 2.x not found: the tests are not built (install catch2, or -DMILL_BUILD_TESTS=OFF "
                   "to silence this)")
    set(MILL_BUILD_TESTS OFF)
  endif()
endif()
