# The library is built in stages, one folder and one static library each (docs/architecture.md):
#   base → tokenizers → model → eval → sweep → collect
# A stage may include the headers of the stages it names in DEPENDS and nothing above them; the plugins
# (src/remote, src/runtime) name theirs with mill_layer_rules. The `layering` test (cmake/check_layering.cmake)
# reads these rules and fails on an #include that is not allowed, so a new upward edge cannot slip in.

# mill_stage(<name> [DEPENDS <stages>...] [SOURCES <extra sources>...] [LIBRARIES <third-party targets>...])
# builds mill_<name> from src/<name>/*.cpp.
function(mill_stage name)
  cmake_parse_arguments(STAGE "" "" "DEPENDS;SOURCES;LIBRARIES" ${ARGN})
  file(GLOB sources CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/*.cpp)
  add_library(mill_${name} STATIC ${sources} ${STAGE_SOURCES})
  list(TRANSFORM STAGE_DEPENDS PREPEND mill_ OUTPUT_VARIABLE stage_targets)
  target_link_libraries(mill_${name} PUBLIC ${stage_targets} ${STAGE_LIBRARIES})
  target_include_directories(mill_${name} PUBLIC ${PROJECT_SOURCE_DIR}/include)
  # Position-independent so the plugins (shared libraries) can link the stages too.
  set_target_properties(mill_${name} PROPERTIES POSITION_INDEPENDENT_CODE ON)
  mill_layer_rules(${name} DEPENDS ${STAGE_DEPENDS})
endfunction()

# Records which stages the code in src/<name>/ (and include/mill/<name>/) may include.
function(mill_layer_rules name)
  cmake_parse_arguments(RULE "" "" "DEPENDS" ${ARGN})
  set_property(GLOBAL APPEND PROPERTY MILL_LAYERS ${name})
  set_property(GLOBAL PROPERTY MILL_LAYER_${name} ${RULE_DEPENDS})
endfunction()

# Writes the recorded rules where the layering test reads them; called once all folders are added.
function(mill_write_layer_rules file)
  get_property(layers GLOBAL PROPERTY MILL_LAYERS)
  set(text "# Generated from the mill_stage/mill_layer_rules calls in the CMakeLists files.\nset(MILL_LAYERS ${layers})\n")
  foreach(layer IN LISTS layers)
    get_property(allowed GLOBAL PROPERTY MILL_LAYER_${layer})
    string(APPEND text "set(MILL_LAYER_${layer} ${allowed})\n")
  endforeach()
  file(GENERATE OUTPUT ${file} CONTENT "${text}")
endfunction()
