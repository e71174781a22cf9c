# `cmake --install` and `cpack` (docs/install.md). The installed tree:
#   bin/mill
#   lib/mill/            the plugins (libmill_remote.so, libmill_runtime.so when built) and, with MILL_BUNDLE_LIBS,
#                        every shared library mill and the remote plugin need except the C library and libstdc++
#   share/man/man1/mill.1, the shell completions, share/doc/mill/
# Nothing in it names the prefix: mill finds its plugins in ../lib/mill from its own path (src/base/plugin.cpp) and
# the libraries through $ORIGIN-relative RPATHs, so the tree can be copied or moved anywhere.
include(GNUInstallDirs)

# Fixed rather than GNUInstallDirs' LIBDIR (lib/x86_64-linux-gnu under /usr): mill looks exactly here.
set(MILL_INSTALL_PLUGIN_DIR lib/mill)

option(MILL_BUNDLE_LIBS
       "Install the shared libraries that mill and the remote plugin load (all but the C library and libstdc++) into lib/mill: the relocatable release tarball (scripts/release.sh)"
       OFF)

if(MILL_BUNDLE_LIBS)
  set(mill_bundle_set RUNTIME_DEPENDENCY_SET mill_bundled_libraries)
  # DT_RPATH rather than DT_RUNPATH: the bundled libraries' own dependencies (libcurl's libnghttp2, ...) are then
  # found through the loading object's path too, and a cluster module's LD_LIBRARY_PATH cannot swap in a different
  # build of a library that mill was linked against.
  set_target_properties(mill PROPERTIES INSTALL_RPATH "$ORIGIN/../${MILL_INSTALL_PLUGIN_DIR}")
  target_link_options(mill PRIVATE -Wl,--disable-new-dtags)
  if(MILL_REMOTE)
    set_target_properties(mill_remote PROPERTIES INSTALL_RPATH "$ORIGIN")
    target_link_options(mill_remote PRIVATE -Wl,--disable-new-dtags)
  endif()
endif()

install(TARGETS mill ${mill_bundle_set} RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT mill)
if(MILL_REMOTE)
  install(TARGETS mill_remote ${mill_bundle_set} LIBRARY DESTINATION ${MILL_INSTALL_PLUGIN_DIR} COMPONENT mill)
endif()

# The runtime plugin is its own component: built against the cluster's PyTorch and added to an unpacked release
# with `cmake --install BUILD --component runtime --prefix PREFIX` (docs/install.md). It keeps the absolute path of
# the libtorch it was linked with (a Python environment's torch/lib), which mill does not bundle.
if(TARGET mill_runtime)
  set_target_properties(mill_runtime PROPERTIES INSTALL_RPATH "$ORIGIN" INSTALL_RPATH_USE_LINK_PATH ON)
  install(TARGETS mill_runtime LIBRARY DESTINATION ${MILL_INSTALL_PLUGIN_DIR} COMPONENT runtime)
endif()

if(MILL_BUNDLE_LIBS)
  # Left to the host: glibc's libraries and the loader, and the compiler runtime (libstdc++, libgcc_s), which every
  # Linux with a C++ toolchain has and which a process must not load twice.
  set(mill_host_libraries
      [[^ld-linux]] [[^linux-vdso]] [[^libc\.so]] [[^libm\.so]] [[^libmvec\.so]] [[^libdl\.so]] [[^libpthread\.so]]
      [[^librt\.so]] [[^libresolv\.so]] [[^libutil\.so]] [[^libanl\.so]] [[^libnsl\.so\.1]] [[^libBrokenLocale]]
      [[^libstdc\+\+\.so]] [[^libgcc_s\.so]])
  # Libraries of a module system or a private prefix are found where the build found them.
  string(REPLACE ":" ";" mill_library_path "$ENV{LD_LIBRARY_PATH}")
  install(RUNTIME_DEPENDENCY_SET mill_bundled_libraries DESTINATION ${MILL_INSTALL_PLUGIN_DIR} COMPONENT mill
          PRE_EXCLUDE_REGEXES ${mill_host_libraries}
          POST_EXCLUDE_REGEXES [[/ld-linux[^/]*$]]
          DIRECTORIES ${mill_library_path})
  install(SCRIPT ${CMAKE_SOURCE_DIR}/cmake/third_party_notices.cmake COMPONENT mill)
endif()

# Shell completions, written by mill from its parser like the manual page (docs/cli.md), installed where bash-completion,
# zsh (site-functions on $fpath) and fish (vendor_completions.d) look under a prefix.
set(mill_completion_dir ${CMAKE_BINARY_DIR}/completions)
add_custom_command(
  OUTPUT ${mill_completion_dir}/mill ${mill_completion_dir}/_mill ${mill_completion_dir}/mill.fish
  COMMAND ${CMAKE_COMMAND} -E make_directory ${mill_completion_dir}
  COMMAND $<TARGET_FILE:mill> completion bash > ${mill_completion_dir}/mill
  COMMAND $<TARGET_FILE:mill> completion zsh > ${mill_completion_dir}/_mill
  COMMAND $<TARGET_FILE:mill> completion fish > ${mill_completion_dir}/mill.fish
  DEPENDS mill
  COMMENT "Writing the shell completion scripts")
add_custom_target(mill_completions ALL DEPENDS ${mill_completion_dir}/mill ${mill_completion_dir}/_mill
                                               ${mill_completion_dir}/mill.fish)
install(FILES ${mill_completion_dir}/mill DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions
        COMPONENT mill)
install(FILES ${mill_completion_dir}/_mill DESTINATION ${CMAKE_INSTALL_DATADIR}/zsh/site-functions COMPONENT mill)
install(FILES ${mill_completion_dir}/mill.fish DESTINATION ${CMAKE_INSTALL_DATADIR}/fish/vendor_completions.d
        COMPONENT mill)

# clusters.yaml and the task definitions are compiled into the binary (data/), so only the documentation goes along.
install(FILES ${CMAKE_SOURCE_DIR}/README.md ${CMAKE_SOURCE_DIR}/LICENSE DESTINATION ${CMAKE_INSTALL_DOCDIR}
        COMPONENT mill)
install(DIRECTORY ${CMAKE_SOURCE_DIR}/docs/ DESTINATION ${CMAKE_INSTALL_DOCDIR}/docs COMPONENT mill
        FILES_MATCHING PATTERN "*.md")

# cpack: a .tar.gz of the tree above (relocatable; with MILL_BUNDLE_LIBS it is the release tarball), and from a build
# without bundling a .deb that depends on Debian's/Ubuntu's packages of the libraries (dpkg-shlibdeps).
set(CPACK_PACKAGE_NAME mill)
set(CPACK_PACKAGE_VENDOR "mill")
set(CPACK_PACKAGE_CONTACT "mill maintainers")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "Language-model evaluation sweeps on SLURM clusters")
set(CPACK_RESOURCE_FILE_LICENSE ${CMAKE_SOURCE_DIR}/LICENSE)
set(CPACK_PACKAGE_FILE_NAME mill-${PROJECT_VERSION}-linux-${CMAKE_SYSTEM_PROCESSOR})
set(CPACK_ARCHIVE_COMPONENT_INSTALL OFF)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_SECTION science)
if(MILL_BUNDLE_LIBS)
  set(CPACK_GENERATOR TGZ)
else()
  set(CPACK_GENERATOR TGZ DEB)
endif()
include(CPack)
