# nlohmann_json::nlohmann_json: the installed package when there is one, else
# the copy carried in third_party/nlohmann_json (3.11.2, MIT, see its README).
#
# Why carried rather than optional: JSON is not an add-on here. Model configs
# (src/models), checkpoints (src/train/checkpoint.cpp, optimizer state), the
# safetensors header (src/io) and their tests all read and write it, and the
# lent GPU machines have no nlohmann-json and nothing can be installed there.
# Making it optional would build a library without checkpoints exactly where
# training runs; the header-only copy keeps every feature everywhere at the
# cost of ~1 MB of headers. It is used only when find_package fails, so the
# development and CI machines keep using the Debian package.
find_package(nlohmann_json 3 QUIET)
if(nlohmann_json_FOUND)
  message(STATUS "nlohmann_json ${nlohmann_json_VERSION}: installed package")
else()
  set(FWP_CARRIED_JSON_DIR ${CMAKE_CURRENT_LIST_DIR}/../third_party/nlohmann_json)
  if(NOT EXISTS ${FWP_CARRIED_JSON_DIR}/include/nlohmann/json.hpp)
    message(FATAL_ERROR "nlohmann_json: no installed package and no carried copy in ${FWP_CARRIED_JSON_DIR}")
  endif()
  add_library(fwp_carried_nlohmann_json INTERFACE)
  # SYSTEM: the project's warning flags are not applied to the library's own code.
  # C++ only: no CUDA source includes JSON, and without the flag nvcc's command
  # lines equal those of a build with the installed package (in /usr/include,
  # which is never passed), so ccache serves scripts/check-gpu-machine-build.sh
  # the CUDA objects of build/.
  target_include_directories(fwp_carried_nlohmann_json SYSTEM INTERFACE
    $<BUILD_INTERFACE:$<$<COMPILE_LANGUAGE:CXX>:${FWP_CARRIED_JSON_DIR}/include>>)
  add_library(nlohmann_json::nlohmann_json ALIAS fwp_carried_nlohmann_json)
  message(STATUS "nlohmann_json: no installed package; using the carried copy (3.11.2) in third_party/nlohmann_json")
endif()
