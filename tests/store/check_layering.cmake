# store_layering_test: store/internal/ headers are included only by the
# code allowed to see them (store/CMakeLists.txt says which and why). Every
# other C++ or CUDA file under ROOT may include store/'s public headers only.
# Usage: cmake -DROOT=<repository> -P check_layering.cmake
if(NOT ROOT)
  message(FATAL_ERROR "check_layering.cmake: pass -DROOT=<repository root>")
endif()
set(allowed "^(store|datagen|fuzz|tests/store|tests/datagen|tests/tools/datagen)/")
set(checked 0)
set(violations "")
foreach(dir common scoring proto store datagen metrics server loadgen tools
            benchmarks tests fuzz)
  file(GLOB_RECURSE files RELATIVE ${ROOT} LIST_DIRECTORIES false
       ${ROOT}/${dir}/*.cc ${ROOT}/${dir}/*.h ${ROOT}/${dir}/*.cu
       ${ROOT}/${dir}/*.cuh)
  foreach(f ${files})
    math(EXPR checked "${checked} + 1")
    if(f MATCHES "${allowed}")
      continue()
    endif()
    file(STRINGS ${ROOT}/${f} lines REGEX "^[ \t]*#[ \t]*include[ \t]*[\"<]store/internal/")
    foreach(line ${lines})
      string(STRIP "${line}" line)
      string(APPEND violations "\n  ${f}: ${line}")
    endforeach()
  endforeach()
endforeach()
if(checked EQUAL 0)
  message(FATAL_ERROR "check_layering.cmake: no sources found under ${ROOT}")
endif()
if(violations)
  message(FATAL_ERROR "store/internal/ headers included outside store/, "
                      "its tests, fuzz/ and datagen/ (use store/'s public "
                      "headers or add the target to embsum::store_internal's "
                      "users in store/CMakeLists.txt):${violations}")
endif()
message(STATUS "store layering: ${checked} files checked, no violations")
