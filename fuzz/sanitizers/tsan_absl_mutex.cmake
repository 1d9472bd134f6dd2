# Included by the tsan preset only (CMAKE_PROJECT_INCLUDE): links
# tsan_absl_mutex.cc, which makes absl::Mutex visible to ThreadSanitizer,
# into every executable of the build (see the comment at its top).
add_library(embsum_tsan_absl_mutex OBJECT
  ${CMAKE_CURRENT_LIST_DIR}/tsan_absl_mutex.cc)

function(_embsum_tsan_link_all dir)
  get_property(targets DIRECTORY ${dir} PROPERTY BUILDSYSTEM_TARGETS)
  foreach(target IN LISTS targets)
    get_target_property(type ${target} TYPE)
    if(type STREQUAL "EXECUTABLE")
      target_link_libraries(${target} PRIVATE embsum_tsan_absl_mutex
                            ${CMAKE_DL_LIBS})
    endif()
  endforeach()
  get_property(subdirs DIRECTORY ${dir} PROPERTY SUBDIRECTORIES)
  foreach(subdir IN LISTS subdirs)
    _embsum_tsan_link_all(${subdir})
  endforeach()
endfunction()

cmake_language(DEFER DIRECTORY ${CMAKE_SOURCE_DIR}
               CALL _embsum_tsan_link_all ${CMAKE_SOURCE_DIR})
