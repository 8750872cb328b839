# Helpers shared by every component's CMakeLists.txt.

# tm_component(NAME SOURCES a.c b.c DEPS tm_base PkgConfig::X)
# Builds static library tm_<NAME> with the public include dir.
function(tm_component name)
  cmake_parse_arguments(A "" "" "SOURCES;DEPS" ${ARGN})
  add_library(tm_${name} STATIC ${A_SOURCES})
  target_include_directories(tm_${name} PUBLIC ${CMAKE_SOURCE_DIR}/include
                             PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
  target_link_libraries(tm_${name} PUBLIC ${A_DEPS})
  set_property(GLOBAL APPEND PROPERTY TM_COMPONENT_TARGETS tm_${name})
endfunction()

# tm_test(NAME SOURCES t.c DEPS tm_base [LABELS unit] [TIMEOUT s] [ENV K=V ...])
# A cmocka (or plain) test executable registered with CTest. Tests get the
# source dir (TM_SOURCE_DIR) and the binary dir (TM_BUILD_DIR) in the environment.
function(tm_test name)
  cmake_parse_arguments(A "" "TIMEOUT" "SOURCES;DEPS;LABELS;ENV" ${ARGN})
  add_executable(${name} ${A_SOURCES})
  target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR}/include ${CMAKE_SOURCE_DIR}/tests)
  target_link_libraries(${name} PRIVATE ${A_DEPS} PkgConfig::CMOCKA Threads::Threads)
  add_test(NAME ${name} COMMAND ${name})
  if(NOT A_TIMEOUT)
    set(A_TIMEOUT 300)
  endif()
  set_tests_properties(${name} PROPERTIES TIMEOUT ${A_TIMEOUT}
    ENVIRONMENT "TM_SOURCE_DIR=${CMAKE_SOURCE_DIR};TM_BUILD_DIR=${CMAKE_BINARY_DIR};TM_BINARY=${CMAKE_BINARY_DIR}/tracemart;ASAN_OPTIONS=detect_leaks=1:abort_on_error=1;UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1;${A_ENV}")
  if(A_LABELS)
    set_tests_properties(${name} PROPERTIES LABELS "${A_LABELS}")
  endif()
endfunction()

# tm_embed(OUT_C SYMBOL file) — writes OUT_C defining
#   const unsigned char SYMBOL[]; const size_t SYMBOL_len;
# with the file's bytes (NUL-terminated, the NUL not counted), so shipped
# data (the default topology) lives inside the binary. Regenerated when
# the file changes (it is a configure dependency).
function(tm_embed out_c symbol file)
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${file})
  file(READ ${file} hex HEX)
  string(LENGTH "${hex}" hexlen)
  math(EXPR len "${hexlen} / 2")
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
  string(REGEX REPLACE "((0x..,){32})" "\\1\n" bytes "${bytes}")
  file(WRITE ${out_c}.tmp "/* Generated from ${file} by tm_embed(); do not edit. */\n#include <stddef.h>\nconst unsigned char ${symbol}[] = {\n${bytes}0x00};\nconst size_t ${symbol}_len = ${len};\n")
  configure_file(${out_c}.tmp ${out_c} COPYONLY)
endfunction()
