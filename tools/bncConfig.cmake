# find_package(bnc): the imported target bnc::bnc (libbnc.so and bnc.h of this prefix).
get_filename_component(_bnc_prefix "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)
if(NOT TARGET bnc::bnc)
  add_library(bnc::bnc SHARED IMPORTED)
  set_target_properties(bnc::bnc PROPERTIES IMPORTED_LOCATION "${_bnc_prefix}/lib/libbnc.so"
                        INTERFACE_INCLUDE_DIRECTORIES "${_bnc_prefix}/include")
endif()
unset(_bnc_prefix)
