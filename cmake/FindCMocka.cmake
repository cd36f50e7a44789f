# FindCMocka: the CMocka unit-test library (Debian's libcmocka-dev ships no
# CMake package file). A find module so that find_package(CMocka) honours
# CMAKE_DISABLE_FIND_PACKAGE_CMocka like every other optional dependency.
# Defines CMocka_FOUND and the imported target CMocka::cmocka.
find_path(CMOCKA_INCLUDE_DIR cmocka.h)
find_library(CMOCKA_LIBRARY cmocka)
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(CMocka REQUIRED_VARS CMOCKA_LIBRARY CMOCKA_INCLUDE_DIR)
if(CMocka_FOUND AND NOT TARGET CMocka::cmocka)
  add_library(CMocka::cmocka UNKNOWN IMPORTED)
  set_target_properties(CMocka::cmocka PROPERTIES
    IMPORTED_LOCATION ${CMOCKA_LIBRARY}
    INTERFACE_INCLUDE_DIRECTORIES ${CMOCKA_INCLUDE_DIR})
endif()
mark_as_advanced(CMOCKA_INCLUDE_DIR CMOCKA_LIBRARY)
